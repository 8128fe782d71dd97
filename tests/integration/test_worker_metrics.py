"""Worker pools expose Prometheus metrics summed over their processes."""

from __future__ import annotations

import httpx
import pytest

from shared.embedded import free_port
from tests.support.services import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def test_worker_metrics_count_outcomes_and_retries(stack: Stack) -> None:
    port = free_port()
    stack.start_scheduler()
    metrics_worker = stack.spawn(
        "worker-metrics",
        [
            "worker",
            "--pool",
            "default",
            "--processes",
            "2",
            "--threads",
            "2",
            "--metrics-port",
            str(port),
        ],
    )
    jobs = [stack.submit(payload={"fail_times": 1}) for _ in range(6)]
    for job in jobs:
        assert stack.wait_state(job["id"]).state == "succeeded"

    def scrape() -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return ""

    text = str(
        wait_for(
            lambda: 'state="succeeded"} 6.0' in scrape() and scrape(),
            timeout=20,
            what="metrics endpoint",
        )
    )
    assert metrics_worker.poll() is None
    assert 'conveyor_jobs_finished_total{kind="diag.noop",state="succeeded"} 6.0' in text
    assert 'conveyor_jobs_finished_total{kind="diag.noop",state="queued"} 6.0' in text
    assert 'conveyor_job_retries_total{kind="diag.noop"} 6.0' in text
