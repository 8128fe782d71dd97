"""The scheduler loop: leader by advisory lock; relays the outbox, reaps, prunes."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
import structlog
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.repos import outbox as outbox_repo
from shared.jobs.periodic import PeriodicSpec, builtin_schedules, submit_due
from shared.jobs.retention import RetentionPolicy, purge_once
from shared.messaging.publisher import Publisher, PublishError
from shared.oauth.clients import idle_lifetimes
from workers.scheduler.oauth_sweep import sweep_once
from workers.scheduler.reaper import reap_once, republish_stuck
from workers.scheduler.relay import relay_once

log = structlog.get_logger("scheduler")

LEADER_LOCK_KEY = 0x436F6E76  # "Conv": one scheduler leader per database
NOTIFY_CHANNEL = "conveyor_outbox"


def _pause(failures: int) -> float:
    """Short, capped backoff: a restarted PostgreSQL or RabbitMQ is used again within ~1 s."""
    return float(min(1.0, 0.1 * 2 ** (failures - 1)))


@dataclass(frozen=True)
class SchedulerConfig:
    batch_size: int = 500
    idle_poll_s: float = 1.0
    stale_s: float = 60.0
    reap_every_s: float = 5.0
    prune_every_s: float = 60.0
    retention_s: float = 3600.0
    republish_queued_after_s: float = 120.0
    retention: RetentionPolicy = field(default_factory=lambda: RetentionPolicy(7 * 86400))
    retention_every_s: float = 60.0
    periodic: tuple[PeriodicSpec, ...] = ()
    periodic_every_s: float = 1.0
    oauth_sweep_every_s: float = 0.0  # 0: no OAuth refresh sweep
    oauth_margin_s: float = 300.0
    oauth_idle_lifetimes: Mapping[str, timedelta] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> SchedulerConfig:
        return cls(
            batch_size=settings.relay_batch_size,
            idle_poll_s=settings.relay_idle_poll_s,
            stale_s=settings.heartbeat_stale_s,
            retention_s=settings.outbox_retention_s,
            republish_queued_after_s=settings.republish_queued_after_s,
            retention=RetentionPolicy(settings.job_retention_s, settings.job_retention_by_kind),
            periodic=tuple(builtin_schedules(canary_interval_s=settings.canary_interval_s)),
            oauth_sweep_every_s=settings.oauth_sweep_interval_s,
            oauth_margin_s=settings.oauth_refresh_margin_s,
            oauth_idle_lifetimes=idle_lifetimes(settings),
        )


class Scheduler:
    def __init__(
        self,
        dsn: str,
        sessions: sessionmaker[Session],
        publisher: Publisher,
        config: SchedulerConfig,
    ) -> None:
        self._dsn = dsn
        self._sessions = sessions
        self._publisher = publisher
        self._config = config
        self.stop_event = threading.Event()
        self._next: dict[str, float] = {}

    def run(self) -> None:
        """Block until stopped. A non-leader waits for the lock and stays idle.

        Survives PostgreSQL and RabbitMQ restarts: a lost leader connection (which also
        releases the advisory lock) sends it back here to reconnect and compete again; a
        failed iteration is retried after a short pause, so work resumes within a second
        or two of the service's return.
        """
        failures = 0
        while not self.stop_event.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
                    failures = 0
                    self._compete(conn)
            except psycopg.Error as exc:
                failures += 1
                log.warning("scheduler.database_unreachable", error=str(exc), failures=failures)
                self.stop_event.wait(_pause(failures))

    def _compete(self, conn: psycopg.Connection) -> None:
        while not self.stop_event.is_set():
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,)).fetchone()
            if row is not None and row[0]:
                log.info("scheduler.became_leader")
                try:
                    self._lead(conn)
                finally:
                    if not conn.closed and not conn.broken:
                        conn.execute("SELECT pg_advisory_unlock(%s)", (LEADER_LOCK_KEY,))
            else:
                self.stop_event.wait(2.0)

    def _lead(self, conn: psycopg.Connection) -> None:
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        self._next = {"reap": 0.0, "periodic": 0.0, "sweep": 0.0, "prune": 0.0, "retain": 0.0}
        failures = 0
        while not self.stop_event.is_set():
            try:
                published = relay_once(
                    self._sessions, self._publisher, batch_size=self._config.batch_size
                )
                self._housekeeping(time.monotonic())
                if published < self._config.batch_size:
                    self._wait_for_work(conn)
                failures = 0
            except psycopg.OperationalError:
                raise  # the leader connection itself is gone: reconnect in run()
            except PublishError as exc:
                failures += 1
                log.warning("scheduler.publish_failed", error=str(exc), failures=failures)
                self.stop_event.wait(_pause(failures))
            except Exception:
                failures += 1
                log.exception("scheduler.iteration_failed", failures=failures)
                self.stop_event.wait(_pause(failures))
            if conn.closed or conn.broken:
                raise psycopg.OperationalError("leader connection lost")

    def _housekeeping(self, now: float) -> None:
        """Reaper, republish, periodic jobs, OAuth sweep and pruning, each on its own period."""
        due = self._next
        if now >= due["reap"]:
            reap_once(self._sessions, stale_s=self._config.stale_s)
            republish_stuck(self._sessions, older_than_s=self._config.republish_queued_after_s)
            due["reap"] = now + self._config.reap_every_s
        if self._config.periodic and now >= due["periodic"]:
            self._submit_periodic()
            due["periodic"] = now + self._config.periodic_every_s
        if self._config.oauth_sweep_every_s > 0 and now >= due["sweep"]:
            self._sweep_oauth()
            due["sweep"] = now + self._config.oauth_sweep_every_s
        if now >= due["prune"]:
            self._prune()
            due["prune"] = now + self._config.prune_every_s
        if now >= due["retain"]:
            purge_once(self._sessions, self._config.retention, now=datetime.now(UTC))
            due["retain"] = now + self._config.retention_every_s

    def _wait_for_work(self, conn: psycopg.Connection) -> None:
        with session_scope(self._sessions) as session:
            due_in = outbox_repo.seconds_until_next_due(session)
        timeout = (
            self._config.idle_poll_s if due_in is None else min(self._config.idle_poll_s, due_in)
        )
        if timeout <= 0:
            return
        for _ in conn.notifies(timeout=timeout, stop_after=1):
            pass

    def _submit_periodic(self) -> None:
        with session_scope(self._sessions) as session:
            due = submit_due(session, list(self._config.periodic), now=lambda: datetime.now(UTC))
        if due:
            log.info("scheduler.periodic_submitted", schedules=due)

    def _sweep_oauth(self) -> None:
        sweep_once(
            self._sessions,
            now=datetime.now(UTC),
            margin=timedelta(seconds=self._config.oauth_margin_s),
            idle_lifetimes=self._config.oauth_idle_lifetimes,
        )

    def _prune(self) -> None:
        cutoff = datetime.now(UTC) - timedelta(seconds=self._config.retention_s)
        with session_scope(self._sessions) as session:
            outbox_repo.prune_sent(session, cutoff)
