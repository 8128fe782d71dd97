"""What the status page and `conveyor status --watch` show: one snapshot of the system.

Reads PostgreSQL (jobs, outbox, OAuth connections, the leader lock) and RabbitMQ (queue
depth); a broker that cannot be reached leaves the queue figures empty, not the page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from shared.db.models import Job, OAuthConnection
from shared.db.repos import jobs as jobs_repo
from shared.db.repos import operations as ops_repo
from shared.db.repos import outbox as outbox_repo
from shared.messaging.depth import QueueDepth
from shared.messaging.names import Pool, dead_letter_queue, queue_name
from workers.scheduler.service import LEADER_LOCK_KEY

WINDOW_S = 15 * 60  # "recent" throughput and failures
FAILED_STATES = ("failed", "dead")


@dataclass(frozen=True)
class PoolRow:
    pool: str
    ready: int | None
    unacked: int | None
    consumers: int | None
    dead_letters: int | None
    succeeded: int
    failed: int


@dataclass(frozen=True)
class Overview:
    taken_at: datetime
    pools: list[PoolRow]
    oldest_age_s: dict[str, float]
    outbox_pending: int
    outbox_lag_s: float
    leaders: list[tuple[str, str | None]]
    failures: list[Job]
    reauth: list[OAuthConnection]
    broker_error: str | None = None
    window_s: int = WINDOW_S
    states: dict[str, dict[str, int]] = field(default_factory=dict)


DepthReader = Callable[[], Sequence[QueueDepth]]


def build_overview(
    session: Session, read_depths: DepthReader | None, now: datetime, *, limit: int = 20
) -> Overview:
    depths, broker_error = _depths(read_depths)
    finished = ops_repo.finished_since(session, WINDOW_S)
    states: dict[str, dict[str, int]] = {}
    for kind, state, count in jobs_repo.counts_by_kind_state(session):
        states.setdefault(kind, {})[state] = count
    return Overview(
        taken_at=now,
        pools=[_pool_row(pool, depths, finished) for pool in Pool],
        oldest_age_s=jobs_repo.oldest_queued_age_s(session),
        outbox_pending=outbox_repo.pending_count(session),
        outbox_lag_s=ops_repo.outbox_lag_s(session),
        leaders=ops_repo.scheduler_leaders(session, LEADER_LOCK_KEY),
        failures=ops_repo.recent_failures(session, limit),
        reauth=ops_repo.connections_needing_reauth(session, limit),
        broker_error=broker_error,
        states=states,
    )


def _depths(read_depths: DepthReader | None) -> tuple[dict[str, QueueDepth], str | None]:
    if read_depths is None:
        return {}, "no broker configured"
    try:
        return {d.queue: d for d in read_depths()}, None
    except Exception as exc:  # the page must still show the database's figures
        return {}, f"{type(exc).__name__}: {exc}"


def _pool_row(
    pool: Pool, depths: dict[str, QueueDepth], finished: list[ops_repo.Finished]
) -> PoolRow:
    work = depths.get(queue_name(pool))
    dead = depths.get(dead_letter_queue(queue_name(pool)))
    mine = [f for f in finished if f.pool == pool.value]
    return PoolRow(
        pool=pool.value,
        ready=work.ready if work else None,
        unacked=work.unacked if work else None,
        consumers=work.consumers if work else None,
        dead_letters=dead.ready if dead else None,
        succeeded=sum(f.count for f in mine if f.state == "succeeded"),
        failed=sum(f.count for f in mine if f.state in FAILED_STATES),
    )
