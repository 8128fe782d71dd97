"""Liveness and readiness endpoints for long-running processes without a web framework.

`conveyor worker` (the supervisor) and `conveyor scheduler` serve `/healthz` (the process is
alive and its main loop turns) and `/readyz` (it should get work: false once SIGTERM arrived,
so Kubernetes stops counting it before it exits). The scheduler adds its Prometheus metrics
at `/metrics`. The ingress has its own routes in workers/ingress/app.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = structlog.get_logger("probes")

# A main loop that has not turned for this long is stuck: liveness fails and Kubernetes
# restarts the pod. Generous, because a busy 2-core node can stall a loop for seconds.
STUCK_AFTER_S = 60.0
_NOT_FOUND = b'{"code": "not_found", "message": "no such probe"}'


class Liveness:
    """The main loop calls `beat()` each turn; `alive()` says whether it did so recently."""

    def __init__(self, stuck_after_s: float = STUCK_AFTER_S) -> None:
        self._stuck_after_s = stuck_after_s
        self._last = time.monotonic()

    def beat(self) -> None:
        self._last = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self._last < self._stuck_after_s


class ProbeServer:
    """Serves the probes from a daemon thread until `close()`."""

    def __init__(
        self,
        port: int,
        *,
        alive: Callable[[], bool],
        ready: Callable[[], bool],
        details: Callable[[], Mapping[str, Any]] | None = None,
        registry: CollectorRegistry | None = REGISTRY,
        host: str = "0.0.0.0",  # probes come from outside the pod
    ) -> None:
        handler = _handler(alive, ready, details or dict, registry)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="probes", daemon=True
        )

    def start(self) -> ProbeServer:
        self._thread.start()
        log.info("probes.started", port=self.port)
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(
    alive: Callable[[], bool],
    ready: Callable[[], bool],
    details: Callable[[], Mapping[str, Any]],
    registry: CollectorRegistry | None,
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._state(alive(), "ok", "stuck")
            elif path == "/readyz":
                self._state(ready(), "ready", "not_ready")
            elif path == "/metrics" and registry is not None:
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            else:
                self._send(
                    404, "application/json", b'{"code":"not_found","message":"no such probe"}'
                )

        def _state(self, ok: bool, good: str, bad: str) -> None:
            body = {"status": good if ok else bad, **details()}
            self._send(200 if ok else 503, "application/json", json.dumps(body).encode())

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Probes arrive every few seconds: not worth a log line each."""

    return Handler
