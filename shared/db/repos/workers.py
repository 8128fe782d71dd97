"""Which worker runs what: read from the `worker` column the runner writes on each claim."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class WorkerActivity:
    worker: str
    pool: str
    running: int
    finished_recently: int
    last_seen_s: float


# A worker is "seen" when it claims, heartbeats or finishes a job; idle workers that did
# nothing in the window do not appear (there is no worker registry table).
ACTIVITY_SQL = text(
    """
    SELECT worker, pool,
           count(*) FILTER (WHERE state = 'running') AS running,
           count(*) FILTER (WHERE finished_at > now() - make_interval(secs => :recent)) AS done,
           extract(epoch FROM now() - max(greatest(heartbeat_at, finished_at, started_at)))
    FROM jobs
    WHERE worker IS NOT NULL
      AND (state = 'running' OR finished_at > now() - make_interval(secs => :recent))
    GROUP BY worker, pool
    ORDER BY pool, worker
    """
)


def activity(session: Session, *, recent_s: float) -> list[WorkerActivity]:
    rows = session.execute(ACTIVITY_SQL, {"recent": recent_s}).all()
    return [WorkerActivity(w, p, int(r), int(d), float(s or 0)) for w, p, r, d, s in rows]
