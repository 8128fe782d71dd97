"""Load shapes around a throughput run (bench/throughput.py, issue #11):

- `prefill_terminal`: a table that already holds N terminal jobs, as it does in production
  within the retention window ("20,000 jobs with 1,000,000 terminal jobs already in the
  table"). One `INSERT ... SELECT generate_series` (not the API: a million jobs through the
  workers would take an hour here), then `VACUUM (ANALYZE)` as autovacuum would have done
  long before, so the measured run does not pay for the fill's hint bits and statistics.
- `BackgroundLoad`: a steady flow of R jobs/s from a thread while latency is measured ("the
  same while a background load of half the measured peak throughput runs").
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import session_scope
from shared.jobs.catalog import DIAG_NOOP
from shared.jobs.submit import NewJob, job_row, submit_jobs, validate_payload
from shared.messaging.handoff import Handoff

# Finished between 1 hour and 5 days ago: inside the default 7-day retention, so the
# scheduler's purge keeps them (it still looks, as it would in production).
PREFILL_NEWEST_S = 3600.0
PREFILL_SPAN_S = 5 * 86400.0

# Every column a successful `diag.noop` has (shared/db/repos/job_transitions.py), heap in
# finishing order like a real table's; `user-<i % 100>` as the measured run's jobs.
_PREFILL = text(
    """
    INSERT INTO jobs (id, tenant_id, kind, pool, user_id, state, priority, payload, result,
                      attempt, max_attempts, run_at, progress, cancel_requested, source,
                      worker, started_at, finished_at, created_at, updated_at)
    SELECT gen_random_uuid(), :tenant_id, :kind, :pool, 'user-' || (i % 100), 'succeeded',
           :priority, CAST(:payload AS jsonb), CAST(:result AS jsonb), 1, :max_attempts,
           f - interval '20 ms', 1.0, false, :source, 'bench-prefill', f - interval '10 ms',
           f, f - interval '20 ms', f
    FROM (
        SELECT i, now() - make_interval(secs => :newest_s + (:n - i) * :step_s) AS f
        FROM generate_series(1, :n) AS i
    ) AS s
    """
)


def prefill_terminal(engine: Engine, count: int) -> float:
    """Insert `count` succeeded `diag.noop` jobs; returns the seconds it took (fill + vacuum)."""
    started = time.monotonic()
    template = job_row(
        DIAG_NOOP,
        NewJob("diag.noop", "prefill"),
        job_id=uuid.uuid4(),
        payload=validate_payload(DIAG_NOOP, {}),
        source="api",
        api_key_id=None,
        now=datetime.now(UTC),
    )
    params = {
        key: template[key] for key in ("tenant_id", "kind", "pool", "priority", "max_attempts")
    }
    params.update(
        source=template["source"],
        payload=json.dumps(template["payload"]),
        result=json.dumps({"slept_ms": 0, "attempt": 1}),  # what the no-op returns
        n=count,
        newest_s=PREFILL_NEWEST_S,
        step_s=PREFILL_SPAN_S / max(count, 1),
    )
    with engine.begin() as conn:
        conn.execute(_PREFILL, params)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM (ANALYZE) jobs"))
    return time.monotonic() - started


class BackgroundLoad:
    """Submits `diag.noop` jobs at `rate_per_s` from a thread, one transaction per tick of
    `tick_s` (a tick that ran late catches up, so the average rate holds while the database
    keeps up). Use as a context manager; `achieved_per_s` is what was really submitted.

    The tick shapes the load: at 0.1 s, 350 jobs/s arrive as bursts of 35, and a job that
    lands just behind a burst waits for it to drain; a short tick is a smoother flow."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        rate_per_s: float,
        tick_s: float = 0.1,
        handoff: Handoff | None = None,
    ) -> None:
        self.sessions = sessions
        self.handoff = handoff
        self.rate_per_s = rate_per_s
        self.tick_s = tick_s
        self.sent = 0
        self.elapsed_s = 0.0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="background-load", daemon=True)

    def __enter__(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise RuntimeError("the background submitter failed") from self.error

    @property
    def achieved_per_s(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s else 0.0

    def _run(self) -> None:
        try:
            self._submit_until_stopped()
        except BaseException as exc:  # reported by __exit__, in the measuring thread
            self.error = exc

    def _submit_until_stopped(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.tick_s):
            self.elapsed_s = time.monotonic() - started
            due = int(self.elapsed_s * self.rate_per_s) - self.sent
            if due <= 0:
                continue
            with session_scope(self.sessions) as session:
                jobs = [NewJob("diag.noop", "background") for _ in range(due)]
                submit_jobs(session, jobs, handoff=self.handoff)
            self.sent += due
