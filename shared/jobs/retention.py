"""Terminal jobs and their history leave the database after a retention period.

Default `CONVEYOR_JOB_RETENTION_S` (7 days) after `finished_at`, with per-kind overrides
(`CONVEYOR_JOB_RETENTION_BY_KIND`, JSON `{"kind": seconds}`). The scheduler's leader deletes
in batches of `batch` rows (`FOR UPDATE SKIP LOCKED`, so a batch never waits on a job being
read or cancelled), `job_events` rows going with their job (ON DELETE CASCADE). Short
transactions keep locks brief; plain autovacuum then reuses the space, so tables stay flat.
Until a job is removed its result stays readable and its Idempotency-Key keeps answering
with it; afterwards the key is free again and a repeat creates a new job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import session_scope
from shared.db.repos import jobs as jobs_repo
from shared.db.repos import periodic as periodic_repo

log = structlog.get_logger("jobs")

Rule = tuple[datetime, list[str] | None, list[str]]
RUN_NAME = "retention"  # its last run is recorded in periodic_runs (shown by `conveyor status`)


@dataclass(frozen=True)
class RetentionPolicy:
    default_s: float
    by_kind: Mapping[str, float] = field(default_factory=dict)

    def cutoffs(self, now: datetime) -> list[Rule]:
        """(cutoff, only these kinds or None for all, except these kinds) per rule."""
        overridden = sorted(self.by_kind)
        rules: list[Rule] = [(now - timedelta(seconds=self.default_s), None, overridden)]
        for kind in overridden:
            rules.append((now - timedelta(seconds=self.by_kind[kind]), [kind], []))
        return rules


def purge_once(
    sessions: sessionmaker[Session],
    policy: RetentionPolicy,
    *,
    now: datetime,
    batch: int = 1000,
    max_batches: int = 50,
) -> int:
    """Delete up to `max_batches` batches of expired jobs; returns how many jobs went."""
    deleted = 0
    for cutoff, only, excluded in policy.cutoffs(now):
        for _ in range(max_batches):
            with session_scope(sessions) as session:
                n = jobs_repo.delete_finished_before(
                    session, cutoff, only_kinds=only, except_kinds=excluded, limit=batch
                )
            deleted += n
            if n < batch:
                break
    with session_scope(sessions) as session:
        periodic_repo.lock_last_run(session, RUN_NAME, epoch=now).last_run_at = now
    if deleted:
        log.info("jobs.retention_purged", jobs=deleted)
    return deleted
