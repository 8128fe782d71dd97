"""/metrics: request metrics plus job and queue gauges read at scrape time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import session_scope
from shared.db.repos import jobs as jobs_repo
from shared.db.repos import outbox as outbox_repo
from shared.messaging.depth import queue_depths

log = structlog.get_logger("ingress")


class JobsCollector(Collector):
    def __init__(
        self, sessions: sessionmaker[Session], broker_url: str | None, api_url: str | None
    ) -> None:
        self._sessions = sessions
        self._broker_url = broker_url
        self._api_url = api_url

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily(
            "conveyor_jobs", "Jobs by kind and state", labels=["kind", "state"]
        )
        oldest = GaugeMetricFamily(
            "conveyor_oldest_queued_job_age_seconds",
            "Age of the oldest due, queued job",
            labels=["kind"],
        )
        with session_scope(self._sessions) as session:
            for kind, state, count in jobs_repo.counts_by_kind_state(session):
                jobs.add_metric([kind, state], count)
            for kind, age in jobs_repo.oldest_queued_age_s(session).items():
                oldest.add_metric([kind], age)
            pending = outbox_repo.pending_count(session)
        yield jobs
        yield oldest
        yield GaugeMetricFamily(
            "conveyor_outbox_pending",
            "Due outbox rows not yet published (delayed rows excluded)",
            value=pending,
        )
        yield from self._queues()

    def _queues(self) -> Iterator[GaugeMetricFamily]:
        if not self._broker_url:
            return
        ready = GaugeMetricFamily("conveyor_queue_ready", "Messages ready", labels=["queue"])
        unacked = GaugeMetricFamily(
            "conveyor_queue_unacked", "Messages delivered, not acked", labels=["queue"]
        )
        consumers = GaugeMetricFamily("conveyor_queue_consumers", "Consumers", labels=["queue"])
        try:
            depths = queue_depths(self._broker_url, self._api_url)
        except Exception as exc:
            log.warning("ingress.queue_depth_failed", error=str(exc))
            return
        used = _used_queues()
        for d in (d for d in depths if d.queue in used):
            ready.add_metric([d.queue], d.ready)
            consumers.add_metric([d.queue], d.consumers)
            if d.unacked is not None:
                unacked.add_metric([d.queue], d.unacked)
        yield ready
        yield unacked
        yield consumers


def _used_queues() -> set[str]:
    """Queues of pools that serve at least one kind (and their dead-letter queues): a pool
    with no kinds has no consumers by design, and a 0 there must not look like an outage."""
    from shared.jobs.catalog import all_specs
    from shared.messaging.names import dead_letter_queue, queue_name

    work = {queue_name(spec.pool) for spec in all_specs()}
    return work | {dead_letter_queue(q) for q in work}


class CachedCollector(Collector):
    """Serves `inner`'s last samples for `ttl_s` seconds: the GROUP BYs behind the job gauges
    run at most once per interval per ingress, however many scrapers (or replicas' worth of
    scrapes) arrive. One scrape at a time refreshes; the others wait for it, then share."""

    def __init__(self, inner: Collector, ttl_s: float) -> None:
        self._inner = inner
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._samples: list[Metric] = []
        self._read_at: float | None = None
        self.refreshes = 0

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._read_at is None or now - self._read_at >= self._ttl_s:
                self._samples = list(self._inner.collect())
                self._read_at = now
                self.refreshes += 1
            samples = self._samples
        yield from samples
