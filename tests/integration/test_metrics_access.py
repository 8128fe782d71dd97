"""Issue 12, /metrics: behind a scrape token, cheap per scrape; worker metrics on loopback.

Broken on purpose once each: `_metrics_refusal` returning None (the token tests fail), the
collectors registered without `CachedCollector` (the GROUP BY count goes to 5), and the
worker's `--metrics-host` default set back to 0.0.0.0 (the bind test fails).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from shared.embedded import free_port
from tests.support.services import wait_for
from tests.support.stack import Stack
from workers.ingress.app import create_app

pytestmark = pytest.mark.integration

TOKEN = "scrape-token-for-tests-7f3a"


def client_for(stack: Stack, **overrides: Any) -> TestClient:
    return TestClient(create_app(stack.settings(**overrides), stack.sessions))


def test_metrics_need_the_scrape_token_when_one_is_set(stack: Stack) -> None:
    with client_for(stack, metrics_token=TOKEN) as client:
        missing = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        api_key = client.get("/metrics", headers=stack.headers())  # an API key is not enough
        right = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    for refused in (missing, wrong, api_key):
        assert refused.status_code == 401, refused.text
        assert refused.json()["code"] == "unauthorized"
    assert right.status_code == 200
    assert "conveyor_outbox_pending" in right.text


@pytest.fixture
def group_bys(stack: Stack) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "GROUP BY" in statement.upper() and "jobs" in statement:
            seen.append(statement)

    event.listen(stack.engine, "before_cursor_execute", count)
    yield seen
    event.remove(stack.engine, "before_cursor_execute", count)


def test_scrapes_within_the_cache_interval_run_no_group_by(
    stack: Stack, group_bys: list[str]
) -> None:
    with client_for(stack, metrics_cache_s=3600) as client:
        bodies = [client.get("/metrics").text for _ in range(5)]
    per_scrape = len(group_bys)
    assert per_scrape >= 1, "the first scrape reads the database"
    with client_for(stack, metrics_cache_s=0) as client:
        client.get("/metrics")
    uncached = len(group_bys) - per_scrape
    # Five cached scrapes cost what one uncached scrape costs.
    assert per_scrape == uncached
    assert all("conveyor_jobs" in body for body in bodies)


def test_worker_metrics_bind_loopback_by_default(stack: Stack) -> None:
    port = free_port()
    args = ["worker", "--pool", "default", "--processes", "1", "--metrics-port", str(port)]
    worker = stack.spawn("worker-bind", args)

    def listening() -> list[str]:
        return [
            c.laddr.ip
            for c in psutil.net_connections("inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        ]

    addresses = wait_for(listening, timeout=60, what="the metrics port listening")
    assert addresses == ["127.0.0.1"]
    assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
    Stack.kill(worker)
