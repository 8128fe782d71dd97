"""`diag.noop`: sleeps in checkpointed slices, can fail on purpose. For smoke tests and benches.

Optionally records each execution in an external trace (`trace.py`) and round-trips a small
object through the object store, so the chaos suite can count runs and hit S3 mid-job.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from shared.errors import PermanentError
from shared.jobs.context import JobContext
from shared.jobs.payloads.diag import NoopPayload
from workers.diag.trace import traced

SLICE_MS = 100


class InjectedFailure(Exception):
    """The failure `fail_times` asks for (a plain exception: retried like any bug)."""


class RoundtripMismatch(PermanentError):
    code = "roundtrip_mismatch"


def noop(
    ctx: JobContext,
    session: Session,
    payload: NoopPayload,
    *,
    trace_path: Path | None = None,
    bucket: str | None = None,
) -> dict[str, Any]:
    del session  # the no-op touches no product data
    with traced(trace_path, ctx.job_id, ctx.attempt):
        return _work(ctx, payload, bucket)


def _work(ctx: JobContext, payload: NoopPayload, bucket: str | None) -> dict[str, Any]:
    if payload.fail_permanently:
        raise PermanentError("asked to fail permanently", code="injected", job_id=ctx.job_id)
    if ctx.attempt <= payload.fail_times:
        raise InjectedFailure(f"injected failure on attempt {ctx.attempt}")
    if payload.store_roundtrip:
        _roundtrip(ctx, bucket)
    remaining = payload.sleep_ms
    while remaining > 0:
        step = min(SLICE_MS, remaining)
        time.sleep(step / 1000)
        remaining -= step
        ctx.checkpoint(1 - remaining / payload.sleep_ms, f"{remaining} ms left")
    return {"slept_ms": payload.sleep_ms, "attempt": ctx.attempt}


def roundtrip_key(job_id: object) -> str:
    return f"roundtrip/{job_id}"


def _roundtrip(ctx: JobContext, bucket: str | None) -> None:
    """Write then read a deterministic key: a re-run overwrites the same object."""
    if bucket is None:
        raise RuntimeError("store_roundtrip needs the diag bucket name")
    body = f"diag.noop {ctx.job_id}".encode()
    ctx.store.put_bytes(bucket, roundtrip_key(ctx.job_id), body, content_type="text/plain")
    if ctx.store.get_bytes(bucket, roundtrip_key(ctx.job_id)) != body:
        raise RoundtripMismatch("object store returned other bytes", job_id=ctx.job_id)
