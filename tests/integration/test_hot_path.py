"""The hot path's write savings keep their promises (issue #11): completion events only where
configured, published outbox rows deleted, the happy path's history on the job row."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from shared.db.engine import session_scope
from shared.db.models import OutboxMessage
from shared.messaging.names import EVENTS_EXCHANGE
from tests.support.services import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
FAILURES_ONLY = json.dumps({"*": ["failed", "dead", "cancelled"]})


def test_success_events_switched_off_publish_failure_events_only(fresh_stack: Stack) -> None:
    """With CONVEYOR_COMPLETION_EVENTS = failures only, a successful job publishes no event
    (no outbox row) and a failed one still does; the relay leaves no published row behind.
    The failed job's event is the positive control: it is written after the success, and the
    relay publishes in id order, so the success's event would have arrived first.
    Mutation checks: with `publishes_completion` always true, the success event arrived;
    with the relay marking rows sent instead of deleting them, rows stayed."""
    stack = fresh_stack
    channel = stack.amqp_channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, EVENTS_EXCHANGE, routing_key="job.diag.noop.*")
    stack.start_scheduler()
    stack.start_worker("default", processes=1, threads=2, CONVEYOR_COMPLETION_EVENTS=FAILURES_ONLY)

    ok = stack.submit()
    assert stack.wait_state(ok["id"], timeout=60).state == "succeeded"
    bad = stack.submit(payload={"fail_permanently": True})
    assert stack.wait_state(bad["id"], timeout=60).state == "failed"

    seen: list[dict[str, Any]] = []

    def failed_event_arrived() -> bool:
        while (got := channel.basic_get(queue, auto_ack=True))[0] is not None:
            seen.append(json.loads(got[2]))
        return any(e["job_id"] == bad["id"] for e in seen)

    wait_for(failed_event_arrived, timeout=30, what="the failed job's completion event")
    assert [e["state"] for e in seen] == ["failed"]
    assert [e["job_id"] for e in seen] == [bad["id"]]

    def outbox_rows() -> int:
        with session_scope(stack.sessions) as session:
            return int(session.execute(select(func.count()).select_from(OutboxMessage)).scalar())

    wait_for(lambda: outbox_rows() == 0, timeout=30, what="published rows deleted")
    channel.connection.close()
