"""diag.noop's chaos-suite additions: the store round-trip and the external trace."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, cast

import pytest

from shared.jobs.context import JobContext
from shared.jobs.payloads.diag import NoopPayload
from shared.storage.base import ObjectNotFound
from shared.storage.memory import MemoryStore
from workers.diag import service
from workers.diag.trace import read_trace

BUCKET = "t-diag"


def context(store: MemoryStore, attempt: int = 1) -> JobContext:
    # No sessions needed: sleep_ms=0 never checkpoints.
    return JobContext(
        uuid.uuid4(), "diag.noop", "u1", attempt, 3, cast(Any, None), store_factory=lambda: store
    )


def test_roundtrip_writes_a_deterministic_key_and_reads_it_back(tmp_path: Path) -> None:
    store = MemoryStore()
    store.ensure_bucket(BUCKET)
    ctx = context(store)
    payload = NoopPayload(store_roundtrip=True)
    trace = tmp_path / "trace.jsonl"
    for _ in range(2):  # a re-run overwrites the same object
        assert service.noop(ctx, cast(Any, None), payload, trace_path=trace, bucket=BUCKET) == {
            "slept_ms": 0,
            "attempt": 1,
        }
    assert store.get_bytes(BUCKET, service.roundtrip_key(ctx.job_id)) == (
        f"diag.noop {ctx.job_id}".encode()
    )
    runs = read_trace(trace)
    assert [(r.job_id, r.attempt, r.ok) for r in runs] == [(str(ctx.job_id), 1, True)] * 2


def test_a_store_outage_fails_the_attempt_and_the_trace_says_so(tmp_path: Path) -> None:
    store = MemoryStore()  # no bucket: every put fails, as when S3 is down
    trace = tmp_path / "trace.jsonl"
    with pytest.raises(ObjectNotFound):  # an ordinary exception: the attempt is retried
        service.noop(
            context(store),
            cast(Any, None),
            NoopPayload(store_roundtrip=True),
            trace_path=trace,
            bucket=BUCKET,
        )
    [run] = read_trace(trace)
    assert run.ok is False and run.end_ns is not None


def test_payloads_without_the_new_field_stay_valid() -> None:
    assert NoopPayload.model_validate({"sleep_ms": 5}).store_roundtrip is False
