"""A real `conveyor ingress` process (uvicorn) for tests that need real HTTP concurrency."""

from __future__ import annotations

import httpx

from shared.embedded import free_port
from tests.support.services import wait_for
from tests.support.stack import Stack


def start_ingress(stack: Stack, **env: str) -> str:
    """Spawn the ingress on a free loopback port; returns its base URL once it answers.
    `env`: extra CONVEYOR_* variables (e.g. CONVEYOR_MASTER_KEYS)."""
    port = free_port()
    stack.spawn("ingress", ["ingress", "--host", "127.0.0.1", "--port", str(port)], **env)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=60, what="the ingress answering")
    return url
