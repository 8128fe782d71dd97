"""`diag.noop`: sleeps in checkpointed slices, can fail on purpose. For smoke tests and benches."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session

from shared.errors import PermanentError
from shared.jobs.context import JobContext
from shared.jobs.payloads.diag import NoopPayload

SLICE_MS = 100


class InjectedFailure(Exception):
    """The failure `fail_times` asks for (a plain exception: retried like any bug)."""


def noop(ctx: JobContext, session: Session, payload: NoopPayload) -> dict[str, Any]:
    del session  # the no-op touches no product data
    if payload.fail_permanently:
        raise PermanentError("asked to fail permanently", code="injected", job_id=ctx.job_id)
    if ctx.attempt <= payload.fail_times:
        raise InjectedFailure(f"injected failure on attempt {ctx.attempt}")
    remaining = payload.sleep_ms
    while remaining > 0:
        step = min(SLICE_MS, remaining)
        time.sleep(step / 1000)
        remaining -= step
        ctx.checkpoint(1 - remaining / payload.sleep_ms, f"{remaining} ms left")
    return {"slept_ms": payload.sleep_ms, "attempt": ctx.attempt}
