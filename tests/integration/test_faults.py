"""The spine under faults (issue #7): each test names the bug it guards against.

Each of these failed on the code before the fix; the docstrings say how.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from shared.db.engine import session_scope
from shared.jobs.submit import NewJob, submit_jobs
from tests.support.ingress import start_ingress
from tests.support.outage import database_down
from tests.support.services import rabbitmqctl, wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def _log_events(path: Path) -> list[dict[str, object]]:
    events = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def _logged(stack: Stack, prefix: str, event: str) -> int:
    return sum(
        1
        for path in Path(stack.logs).glob(f"{prefix}*.log")
        for e in _log_events(path)
        if e.get("event") == event
    )


def _ready(stack: Stack) -> int:
    return _dead_letters(stack, "conveyor.default")


def _dead_letters(stack: Stack, queue: str = "conveyor.default.XQ") -> int:
    channel = stack.amqp_channel()
    try:
        return int(channel.queue_declare(queue, passive=True).method.message_count)
    finally:
        channel.connection.close()


def _submit_many(stack: Stack, n: int, payload: dict[str, object]) -> list[uuid.UUID]:
    with session_scope(stack.sessions) as session:
        outcomes = submit_jobs(session, [NewJob("diag.noop", f"u{i}", payload) for i in range(n)])
    return [o.job_id for o in outcomes]


@pytest.fixture
def stack(fresh_stack: Stack) -> Stack:
    """A stack per test: processes and logs of one fault never blur the next test."""
    return fresh_stack


@pytest.fixture
def commit_hook(stack: Stack) -> Iterator[None]:
    """A deferred constraint trigger: runs at COMMIT of a transaction that inserted a job
    for user `slow-commit` (sleeps 1 s) or `failing-commit` (raises)."""
    with session_scope(stack.sessions) as session:
        session.execute(
            text(
                """
                CREATE FUNCTION test_commit_hook() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.user_id = 'slow-commit' THEN PERFORM pg_sleep(1); END IF;
                    IF NEW.user_id = 'failing-commit' THEN
                        RAISE EXCEPTION 'commit refused by the test';
                    END IF;
                    RETURN NULL;
                END $$;
                CREATE CONSTRAINT TRIGGER test_commit_hook AFTER INSERT ON jobs
                    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
                    EXECUTE FUNCTION test_commit_hook();
                """
            )
        )
    yield
    with session_scope(stack.sessions) as session:
        session.execute(text("DROP TRIGGER test_commit_hook ON jobs"))
        session.execute(text("DROP FUNCTION test_commit_hook()"))


@pytest.fixture
def ingress_url(stack: Stack) -> str:
    """A real `conveyor ingress` (uvicorn): the response goes out when the server sends it,
    unlike the in-process test client, which returns only after the app has finished."""
    return start_ingress(stack)


def test_202_is_sent_only_after_the_commit(
    stack: Stack, commit_hook: None, ingress_url: str
) -> None:
    """Before: the session dependency committed after the response was sent, so the 202
    arrived ~1 s before the COMMIT and the job was not yet readable by anyone."""
    response = httpx.post(
        f"{ingress_url}/v1/jobs",
        json={"kind": "diag.noop", "user_id": "slow-commit", "payload": {}},
        headers=stack.headers(),
        timeout=30,
    )
    assert response.status_code == 202
    # Read through a fresh connection right away: the row is already committed.
    assert stack.find_job(response.json()["id"]) is not None


def test_a_failed_commit_is_an_error_never_a_2xx(
    stack: Stack, commit_hook: None, ingress_url: str
) -> None:
    """Before: 202, then 404 for that job (the commit failed after the answer)."""
    response = httpx.post(
        f"{ingress_url}/v1/jobs",
        json={"kind": "diag.noop", "user_id": "failing-commit", "payload": {}},
        headers=stack.headers(),
        timeout=30,
    )
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert "commit refused" not in response.text  # details stay in the log
    with session_scope(stack.sessions) as session:
        count = session.execute(
            text("SELECT count(*) FROM jobs WHERE user_id = 'failing-commit'")
        ).scalar_one()
    assert count == 0


def test_the_ingress_answers_503_with_retry_after_while_the_database_is_down(
    stack: Stack, ingress_url: str
) -> None:
    """Before: plain-text 500s and broken connections during PostgreSQL restarts."""
    body = {"kind": "diag.noop", "user_id": "u", "payload": {}}
    headers = stack.headers()  # the key is made now, while the database is up
    with database_down(stack.db_url):
        response = httpx.post(f"{ingress_url}/v1/jobs", json=body, headers=headers, timeout=30)
    assert response.status_code == 503
    assert response.json()["code"] == "database_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    after = httpx.post(f"{ingress_url}/v1/jobs", json=body, headers=headers, timeout=30)
    assert after.status_code == 202  # and it recovers on its own


def test_deliveries_during_a_database_outage_are_requeued_not_dropped(stack: Stack) -> None:
    """Before: the claim failed while PostgreSQL was down, Dramatiq acked the delivery, and
    the job sat `queued` until the 15-minute republish sweep (the DLQ stayed empty)."""
    stack.start_scheduler()
    ids = _submit_many(stack, 40, {})
    wait_for(lambda: _outbox_drained(stack), timeout=60, what="job messages published")
    before = _dead_letters(stack)
    with database_down(stack.db_url):
        # The messages wait in RabbitMQ; a worker that starts now cannot claim them.
        stack.start_worker("default", processes=1, threads=4)
        wait_for(
            lambda: _ready(stack) < len(ids),
            timeout=60,
            what="the worker taking deliveries while the database is down",
        )
        time.sleep(2)  # the outage goes on while those deliveries fail
    for job_id in ids:
        assert stack.wait_state(job_id, timeout=120).state == "succeeded"
    assert _dead_letters(stack) == before  # nothing dead-lettered, nothing dropped
    assert _logged(stack, "worker", "messaging.requeued") >= 1
    assert _logged(stack, "worker", "messaging.database_back") >= 1


def _outbox_drained(stack: Stack) -> bool:
    with session_scope(stack.sessions) as session:
        pending = session.execute(
            text("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND publish_after <= now()")
        ).scalar_one()
    return pending == 0


def test_a_connection_drop_never_runs_one_job_twice_at_once(stack: Stack) -> None:
    """Before: a redelivered copy took over a job still running in the same worker (its
    channel had died, its thread had not), so two attempts ran at the same time."""
    stack.start_scheduler()
    stack.start_worker("default", processes=1, threads=8)
    # Long enough that the redelivered copies arrive while the first attempts still run.
    ids = _submit_many(stack, 4, {"sleep_ms": 12000})
    wait_for(
        lambda: all(stack.job(i).state == "running" for i in ids),
        timeout=60,
        what="jobs running",
    )
    running_at_close = [i for i in ids if stack.job(i).state == "running"]
    rabbitmqctl("close_all_connections", "-p", stack.vhost, "test: connection drop")
    for job_id in ids:
        assert stack.wait_state(job_id, timeout=120).state == "succeeded"
    for job_id in running_at_close:
        # One attempt: no take-over while the first one was alive; one success.
        assert stack.job(job_id).attempt == 1
        assert [e[0] for e in stack.events(job_id) if e[2] == "succeeded"] == [1]
        assert not [e for e in stack.events(job_id) if e[3] == "take_over"]


def test_the_pool_replaces_a_killed_process(stack: Stack) -> None:
    """Before: SIGKILL of one Dramatiq child made the parent stop the whole pool."""
    stack.start_scheduler()
    pool = stack.start_worker("default", processes=2, threads=2)
    first = _submit_many(stack, 4, {})
    for job_id in first:
        stack.wait_state(job_id, "succeeded", timeout=60)
    children = _children(pool.pid)
    assert len(children) == 2
    os.kill(children[0], signal.SIGKILL)
    wait_for(
        lambda: len(set(_children(pool.pid)) - {children[0]}) == 2,
        timeout=60,
        what="a replacement process",
    )
    assert pool.poll() is None  # the supervisor lives on
    later = _submit_many(stack, 10, {})
    for job_id in later:
        assert stack.wait_state(job_id, timeout=60).state == "succeeded"
    assert _logged(stack, "worker", "worker.child_exited") >= 1


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return sorted(int(p) for p in out.split())


def test_the_scheduler_survives_a_database_outage(stack: Stack) -> None:
    """Before: `_wait_for_work` used the dead LISTEN connection outside the `try` and the
    scheduler process exited on every PostgreSQL restart."""
    scheduler = stack.start_scheduler()
    stack.start_worker("default", processes=1, threads=2)
    stack.wait_state(_submit_many(stack, 1, {})[0], "succeeded", timeout=60)
    with database_down(stack.db_url):
        time.sleep(3)  # the outage itself: a few of the scheduler's reconnect attempts
    assert scheduler.poll() is None
    job_id = _submit_many(stack, 1, {})[0]
    assert stack.wait_state(job_id, timeout=60).state == "succeeded"
    assert scheduler.poll() is None
