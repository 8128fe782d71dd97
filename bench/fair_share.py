"""Fair share under a flood: tenant B's single job latency while tenant A floods the API.

Tenant A submits `--flood` `diag.noop` jobs (sleep `--sleep-ms` each) through the real HTTP
routes in batches of 100, retrying after each 429's Retry-After (shortened to 0.5 s); once
A's queue is as full as it gets (the whole flood queued, or A's first 429 at the cap),
tenant B submits ONE job. Latency: B's `finished_at - created_at`
from PostgreSQL. One `default` worker (1 process x `--threads`) and the scheduler run as
real processes; the ingress runs in this process.

Runs, same stack, queue drained between them:
1. baseline, plain FIFO: no cap (A's whole flood is queued ahead of B's job);
2. caps: `diag.noop` capped at `--cap` unfinished jobs per tenant.

A and B are two real tenants (an API key each). Prints figures; asserts nothing.

    .venv/bin/python -m bench.fair_share --flood 5000 --cap 200
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from shared.db.engine import session_scope
from shared.db.models import Job
from shared.db.repos import limits as limits_repo
from tests.support.services import wait_for
from tests.support.stack import Stack
from workers.ingress.app import create_app

BATCH = 100  # jobs per flood request (under the cap: a batch over it is refused whole)


def _flood(
    client: TestClient, token: str, total: int, sleep_ms: int, started: threading.Event
) -> None:
    job = {"kind": "diag.noop", "user_id": "tenant-a", "payload": {"sleep_ms": sleep_ms}}
    sent = 0
    while sent < total:
        n = min(BATCH, total - sent)
        r = client.post(
            "/v1/jobs:batch", json={"jobs": [job] * n}, headers={"Authorization": f"Bearer {token}"}
        )
        if r.status_code == 202:
            sent += n
        elif r.status_code == 429:
            # A's queue is as full as the cap lets it be: B's worst moment. Retry soon
            # (Retry-After shortened for the bench).
            started.set()
            time.sleep(0.5)
        else:
            raise RuntimeError(r.text)
    started.set()  # no cap: the whole flood is queued (B's worst moment)


def _drained(stack: Stack) -> bool:
    unfinished = select(func.count()).select_from(Job).where(Job.state.in_(limits_repo.UNFINISHED))
    with session_scope(stack.sessions) as session:
        return session.execute(unfinished).scalar_one() == 0


def run(stack: Stack, *, flood: int, sleep_ms: int, cap: int | None) -> tuple[float, float]:
    """Returns (B's latency, A's flood drain time), in seconds."""
    caps = {"diag.noop": cap} if cap else {}
    settings = stack.settings(queue_caps_by_kind=caps, queue_cap_per_kind=10**9)
    run_id = uuid.uuid4().hex[:6]
    a = stack.new_api_key(tenant=f"flooder-{run_id}")
    b = stack.new_api_key(tenant=f"single-{run_id}")
    started = threading.Event()
    t0 = time.monotonic()
    with TestClient(create_app(settings, stack.sessions)) as client:
        flooder = threading.Thread(target=_flood, args=(client, a, flood, sleep_ms, started))
        flooder.start()
        started.wait(3600)
        single = {"kind": "diag.noop", "user_id": "tenant-b", "payload": {"sleep_ms": sleep_ms}}
        r = client.post("/v1/jobs", json=single, headers={"Authorization": f"Bearer {b}"})
        assert r.status_code == 202, r.text
        job = stack.wait_state(r.json()["id"], "succeeded", timeout=3600)
        flooder.join()
    wait_for(lambda: _drained(stack), timeout=3600, what="the flood drained")
    drain = time.monotonic() - t0
    assert job.finished_at is not None
    return (job.finished_at - job.created_at).total_seconds(), drain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flood", type=int, default=5000)
    parser.add_argument("--cap", type=int, default=200)  # >= BATCH
    parser.add_argument("--sleep-ms", type=int, default=20)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    stack = Stack.create(Path(tempfile.mkdtemp(prefix="bench-fair-")))
    try:
        stack.start_scheduler()
        stack.start_worker("default", processes=1, threads=args.threads)
        fifo = run(stack, flood=args.flood, sleep_ms=args.sleep_ms, cap=None)
        capped = run(stack, flood=args.flood, sleep_ms=args.sleep_ms, cap=args.cap)
    finally:
        stack.close()
    print(
        f"flood {args.flood} x diag.noop sleep_ms={args.sleep_ms}, "
        f"1 worker x {args.threads} threads"
    )
    print("| run | tenant B latency (s) | tenant A flood done after (s) |")
    print("|---|---|---|")
    print(f"| FIFO, no cap (baseline) | {fifo[0]:.2f} | {fifo[1]:.1f} |")
    print(f"| cap {args.cap} unfinished per tenant | {capped[0]:.2f} | {capped[1]:.1f} |")


if __name__ == "__main__":
    main()
