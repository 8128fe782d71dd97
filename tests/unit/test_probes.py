"""The probe server of workers and schedulers: /healthz, /readyz, /metrics."""

from __future__ import annotations

import threading

import httpx
from prometheus_client import CollectorRegistry, Counter

from shared.probes import Liveness, ProbeServer


def test_readiness_follows_the_callable_and_reports_details() -> None:
    ready = threading.Event()
    server = ProbeServer(
        0,
        alive=lambda: True,
        ready=ready.is_set,
        details=lambda: {"leader": False},
        host="127.0.0.1",
    ).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        response = httpx.get(f"{base}/readyz")
        assert (response.status_code, response.json()) == (
            503,
            {"status": "not_ready", "leader": False},
        )
        ready.set()
        assert httpx.get(f"{base}/readyz").status_code == 200
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
        assert httpx.get(f"{base}/nope").json()["code"] == "not_found"
    finally:
        server.close()


def test_metrics_come_from_the_given_registry_and_can_be_off() -> None:
    registry = CollectorRegistry()
    Counter("probe_test_total", "a test counter", registry=registry).inc()
    with_metrics = ProbeServer(
        0, alive=lambda: True, ready=lambda: True, registry=registry, host="127.0.0.1"
    ).start()
    without = ProbeServer(
        0, alive=lambda: True, ready=lambda: True, registry=None, host="127.0.0.1"
    ).start()
    try:
        assert (
            "probe_test_total 1.0"
            in httpx.get(f"http://127.0.0.1:{with_metrics.port}/metrics").text
        )
        assert httpx.get(f"http://127.0.0.1:{without.port}/metrics").status_code == 404
    finally:
        with_metrics.close()
        without.close()


def test_liveness_fails_when_the_loop_stops_turning() -> None:
    liveness = Liveness(stuck_after_s=0.0)
    assert not liveness.alive()
    assert Liveness(stuck_after_s=3600).alive()
