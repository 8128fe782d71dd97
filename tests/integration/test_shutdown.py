"""Graceful shutdown and probes with real processes (issue #13).

SIGTERM to a worker pool, a scheduler and the ingress: readiness goes false, in-flight work
finishes, nothing is lost, nothing is left `running`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from shared.db.engine import session_scope
from shared.db.models import Job
from shared.embedded import free_port
from shared.jobs.submit import NewJob, submit_jobs
from tests.support.services import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

GRACE_S = 10.0


@pytest.fixture
def stack(fresh_stack: Stack) -> Stack:
    return fresh_stack


def _probe(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2)
    except httpx.HTTPError:
        return 0, {}
    return response.status_code, response.json()


def _states(stack: Stack) -> dict[str, int]:
    with session_scope(stack.sessions) as session:
        rows = session.execute(select(Job.state, func.count()).group_by(Job.state))
        return {state: int(n) for state, n in rows}


def _start_pool(stack: Stack, probe_port: int) -> subprocess.Popen[bytes]:
    args = ["worker", "--pool", "default", "--processes", "2", "--threads", "8"]
    args += ["--metrics-port", "0", "--grace-s", str(GRACE_S)]
    return stack.spawn("worker", args, CONVEYOR_PROBE_PORT=str(probe_port))


def test_sigterm_mid_batch_finishes_in_flight_jobs_and_loses_none(stack: Stack) -> None:
    stack.start_scheduler()
    port = free_port()
    pool = _start_pool(stack, port)
    wait_for(lambda: _probe(port, "/readyz")[0] == 200, timeout=60, what="the pool ready")
    with session_scope(stack.sessions) as session:
        ids = [
            o.job_id
            for o in submit_jobs(
                session, [NewJob("diag.noop", f"u{i}", {"sleep_ms": 2000}) for i in range(200)]
            )
        ]
    wait_for(lambda: _states(stack).get("succeeded", 0) >= 20, timeout=120, what="20 done")

    os.kill(pool.pid, signal.SIGTERM)  # the supervisor only, as Kubernetes does
    started = time.monotonic()
    wait_for(
        lambda: _probe(port, "/readyz")[0] == 503 or pool.poll() is not None,
        timeout=30,
        what="readiness false",
    )
    assert pool.poll() is None, "the pool exited before its readiness could be seen false"
    assert _probe(port, "/healthz")[0] == 200  # stopping is not being stuck
    pool.wait(timeout=GRACE_S + 30)
    stopped_after = time.monotonic() - started
    assert stopped_after < GRACE_S + 5, f"stop took {stopped_after:.1f}s"
    assert pool.returncode == 0

    left = _states(stack)
    assert left.get("running", 0) == 0, left  # in-flight jobs finished, the rest went back
    assert set(left) <= {"succeeded", "queued"}, left

    _start_pool(stack, free_port())
    for job_id in ids:
        assert stack.wait_state(job_id, timeout=180).state == "succeeded"
    with session_scope(stack.sessions) as session:
        successes = session.execute(
            text(
                "SELECT job_id, count(*) FROM job_history WHERE to_state = 'succeeded'"
                " GROUP BY job_id"
            )
        ).all()
        attempts = set(session.execute(select(Job.attempt)).scalars())
    assert len(successes) == 200 and {n for _, n in successes} == {1}
    assert attempts == {1}, "a job ran twice: the stop interrupted or handed over a running job"


def test_scheduler_sigterm_releases_leadership_to_the_standby(stack: Stack) -> None:
    first_port, second_port = free_port(), free_port()
    first = stack.start_scheduler(CONVEYOR_PROBE_PORT=str(first_port))
    wait_for(
        lambda: _probe(first_port, "/readyz")[1].get("leader") is True,
        timeout=60,
        what="the first scheduler leading",
    )
    stack.start_scheduler(CONVEYOR_PROBE_PORT=str(second_port))
    wait_for(lambda: _probe(second_port, "/readyz")[0] == 200, timeout=60, what="the standby")
    assert _probe(second_port, "/readyz")[1]["leader"] is False

    first.send_signal(signal.SIGTERM)
    first.wait(timeout=30)
    assert first.returncode == 0
    wait_for(
        lambda: _probe(second_port, "/readyz")[1].get("leader") is True,
        timeout=15,
        what="the standby taking over",
    )
    metrics = httpx.get(f"http://127.0.0.1:{second_port}/metrics", timeout=5).text
    assert "conveyor_scheduler_is_leader 1.0" in metrics

    stack.start_worker("default", processes=1, threads=2)
    job = stack.submit(payload={})
    assert stack.wait_state(job["id"], timeout=60).state == "succeeded"


@pytest.fixture
def slow_commits(stack: Stack) -> None:
    """Jobs for user `slow-commit` take 2 s to COMMIT: a request that is surely in flight."""
    with session_scope(stack.sessions) as session:
        session.execute(
            text(
                """
                CREATE FUNCTION test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.user_id = 'slow-commit' THEN PERFORM pg_sleep(2); END IF;
                    RETURN NULL;
                END $$;
                CREATE CONSTRAINT TRIGGER test_slow_commit AFTER INSERT ON jobs
                    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
                    EXECUTE FUNCTION test_slow_commit();
                """
            )
        )


def _sleeping_commits(stack: Stack) -> int:
    with session_scope(stack.sessions) as session:
        query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
        return int(session.execute(text(query)).scalar_one())


def test_ingress_sigterm_lets_in_flight_requests_finish(stack: Stack, slow_commits: None) -> None:
    port = free_port()
    ingress = stack.spawn("ingress", ["ingress", "--host", "127.0.0.1", "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _probe(port, "/readyz")[0] == 200, timeout=60, what="the ingress")
    result: dict[str, httpx.Response] = {}

    def post() -> None:
        result["response"] = httpx.post(
            f"{url}/v1/jobs",
            json={"kind": "diag.noop", "user_id": "slow-commit", "payload": {}},
            headers=stack.headers(),
            timeout=30,
        )

    token = stack.token  # created before the request, not during it
    assert token
    request = threading.Thread(target=post)
    request.start()
    wait_for(lambda: _sleeping_commits(stack) > 0, timeout=30, what="the request in flight")
    ingress.send_signal(signal.SIGTERM)
    request.join(timeout=30)

    response = result["response"]
    assert response.status_code == 202, response.text
    assert stack.job(response.json()["id"]).state == "queued"
    ingress.wait(timeout=30)
    # uvicorn re-raises the signal once its graceful shutdown is done (exit status -15).
    assert ingress.returncode in (0, -signal.SIGTERM)
