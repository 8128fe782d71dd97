"""Priorities reorder waiting work; two schedulers share the load safely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.db.engine import session_scope
from shared.jobs.submit import NewJob, submit_jobs
from shared.messaging.names import Priority
from tests.support.logs import log_events
from tests.support.services import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def test_interactive_jobs_overtake_waiting_bulk_jobs(stack: Stack) -> None:
    scheduler = stack.start_scheduler()
    with session_scope(stack.sessions) as session:
        bulk = [
            s.job_id
            for s in submit_jobs(
                session, [NewJob("diag.noop", "u", {"sleep_ms": 10}, Priority.BULK)] * 60
            )
        ]
    with session_scope(stack.sessions) as session:
        urgent = [
            s.job_id
            for s in submit_jobs(
                session, [NewJob("diag.noop", "u", {"sleep_ms": 10}, Priority.INTERACTIVE)] * 5
            )
        ]
    channel = stack.amqp_channel()
    wait_for(
        lambda: channel.queue_declare("conveyor.default", passive=True).method.message_count >= 65,
        timeout=20,
        what="all messages queued",
    )
    channel.connection.close()

    stack.start_worker("default", processes=1, threads=1)
    for job_id in bulk + urgent:
        stack.wait_state(job_id, timeout=60)

    order = sorted(bulk + urgent, key=lambda i: stack.job(i).started_at)  # type: ignore[arg-type,return-value]
    positions = [order.index(u) for u in urgent]
    # One thread prefetches a couple of messages before the urgent ones can overtake.
    assert max(positions) < 10, positions
    stack.kill(scheduler)


def _led(log: Path) -> bool:
    return any(
        line.startswith("{") and json.loads(line)["event"] == "scheduler.became_leader"
        for line in log.read_text().splitlines()
    )


def test_two_schedulers_elect_one_leader_and_fail_over(stack: Stack) -> None:
    """One leader at a time, and no message published twice: every job has exactly one claim
    and no worker skipped a delivery of these jobs (a duplicate publish would show as a
    `jobs.delivery_skipped` of a job already running or done). Mutation check: with the
    advisory lock always granted, both schedulers led and this test failed."""
    for process in list(stack.processes):
        stack.kill(process)
    schedulers = [stack.start_scheduler(), stack.start_scheduler()]
    logs = {
        p.pid: Path(stack.logs) / f"scheduler-{stack.processes.index(p)}.log" for p in schedulers
    }
    stack.start_worker("default", processes=1, threads=4)
    with session_scope(stack.sessions) as session:
        ids = [s.job_id for s in submit_jobs(session, [NewJob("diag.noop", "u")] * 50)]
    for job_id in ids:
        assert stack.wait_state(job_id).state == "succeeded"
        assert [e[2] for e in stack.events(job_id)] == ["queued", "running", "succeeded"]

    skipped = log_events(stack, "worker", event="jobs.delivery_skipped")
    assert not [e for e in skipped if e.get("job_id") in {str(i) for i in ids}], skipped

    leaders = [p for p in schedulers if _led(logs[p.pid])]
    assert len(leaders) == 1  # the other one waits on the advisory lock
    [standby] = [p for p in schedulers if p is not leaders[0]]

    stack.kill(leaders[0])
    wait_for(lambda: _led(logs[standby.pid]), timeout=15, what="standby takes over")
    with session_scope(stack.sessions) as session:
        more = [s.job_id for s in submit_jobs(session, [NewJob("diag.noop", "u")] * 5)]
    for job_id in more:
        assert stack.wait_state(job_id, timeout=30).state == "succeeded"
        assert [e[2] for e in stack.events(job_id)] == ["queued", "running", "succeeded"]
    skipped = log_events(stack, "worker", event="jobs.delivery_skipped")
    assert not [e for e in skipped if e.get("job_id") in {str(i) for i in ids + more}], skipped
