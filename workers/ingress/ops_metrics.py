"""More /metrics gauges read at scrape time: outbox lag, OAuth connections, scheduler leader.

Kept apart from metrics.py (jobs and queues) so each collector stays one screen long.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import session_scope
from shared.db.models.oauth import CONNECTION_STATUSES
from shared.db.repos import operations as ops_repo
from workers.scheduler.service import LEADER_LOCK_KEY


class OperationsCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with session_scope(self._sessions) as session:
            lag = ops_repo.outbox_lag_s(session)
            connections = ops_repo.oauth_connections_by_status(session)
            leaders = len(ops_repo.scheduler_leaders(session, LEADER_LOCK_KEY))
        yield GaugeMetricFamily(
            "conveyor_outbox_lag_seconds",
            "How long the oldest due, unpublished outbox row has waited",
            value=lag,
        )
        by_status = GaugeMetricFamily(
            "conveyor_oauth_connections", "OAuth connections by status", labels=["status"]
        )
        for status in CONNECTION_STATUSES:  # every status, so a rule sees 0 rather than nothing
            by_status.add_metric([status], connections.get(status, 0))
        yield by_status
        yield GaugeMetricFamily(
            "conveyor_scheduler_leaders",
            "Schedulers holding the leader lock (1 is healthy, 0 means nothing publishes)",
            value=leaders,
        )
