"""The scheduler loop: leader by advisory lock; relays the outbox, reaps, prunes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
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
from shared.metrics import REAPER_ACTIONS, RETENTION_DELETED, RETENTION_RUNS, SCHEDULER_LEADER
from shared.oauth.clients import idle_lifetimes
from shared.probes import Liveness, ProbeServer
from workers.backups.schedule import submit_due_backups
from workers.exports.expiry import make_tick as make_export_tick
from workers.scheduler.oauth_sweep import sweep_once
from workers.scheduler.reaper import reap_once, republish_stuck
from workers.scheduler.relay import relay_once, relay_pause_s
from workers.sync.prune import make_prune as make_sync_prune
from workers.uploads.sweep import make_sweep as make_incoming_sweep

log = structlog.get_logger("scheduler")

LEADER_LOCK_KEY = 0x436F6E76  # "Conv": one scheduler leader per database
NOTIFY_CHANNEL = "conveyor_outbox"


def _pause(failures: int) -> float:
    """Short, capped backoff: a restarted PostgreSQL or RabbitMQ is used again within ~1 s."""
    return float(min(1.0, 0.1 * 2 ** (failures - 1)))


@dataclass(frozen=True)
class Chore:
    name: str
    every_s: float
    run: Callable[[], object]


@dataclass(frozen=True)
class SchedulerConfig:
    batch_size: int = 500
    idle_poll_s: float = 1.0
    gather_s: float = 0.0  # pause after a partial batch of several rows (relay_pause_s)
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
    backup_every_s: float = 0.0  # 0: no scheduled backups
    export_every_s: float = 0.0  # 0: no export expiry sweep or export schedules
    export_tick: Callable[[sessionmaker[Session]], None] | None = None
    incoming_every_s: float = 0.0  # 0: no sweep of abandoned incoming uploads
    incoming_sweep: Callable[[sessionmaker[Session]], None] | None = None
    sync_prune_every_s: float = 0.0  # 0: no sync pruning
    sync_prune: Callable[[sessionmaker[Session]], None] | None = None  # workers/sync/prune.py
    probe_port: int = 0  # /healthz, /readyz, /metrics; 0: none

    @classmethod
    def from_settings(cls, settings: Settings) -> SchedulerConfig:
        return cls(
            batch_size=settings.relay_batch_size,
            idle_poll_s=settings.relay_idle_poll_s,
            gather_s=settings.relay_gather_ms / 1000,
            stale_s=settings.heartbeat_stale_s,
            retention_s=settings.outbox_retention_s,
            republish_queued_after_s=settings.republish_queued_after_s,
            retention=RetentionPolicy(settings.job_retention_s, settings.job_retention_by_kind),
            retention_every_s=settings.job_retention_interval_s,
            periodic=tuple(builtin_schedules(canary_interval_s=settings.canary_interval_s)),
            oauth_sweep_every_s=settings.oauth_sweep_interval_s,
            oauth_margin_s=settings.oauth_refresh_margin_s,
            oauth_idle_lifetimes=idle_lifetimes(settings),
            backup_every_s=settings.backup_schedule_every_s,
            export_every_s=settings.export_sweep_interval_s,
            export_tick=make_export_tick(settings),
            incoming_every_s=settings.incoming_sweep_interval_s,
            incoming_sweep=make_incoming_sweep(settings),
            sync_prune_every_s=settings.sync_prune_every_s,
            sync_prune=make_sync_prune(settings),
            probe_port=settings.probe_port,
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
        self.connected = False
        self.leading = False
        self._liveness = Liveness()
        self.chores = self._chores()

    def ready(self) -> bool:
        """Ready = connected and not stopping (a standby is ready: it is what takes over)."""
        return self.connected and not self.stop_event.is_set()

    def _probes(self) -> ProbeServer | None:
        if not self._config.probe_port:
            return None
        return ProbeServer(
            self._config.probe_port,
            alive=lambda: self.stop_event.is_set() or self._liveness.alive(),
            ready=self.ready,
            details=lambda: {"leader": self.leading},
        ).start()

    def run(self) -> None:
        """Block until stopped. A non-leader waits for the lock and stays idle.

        Survives PostgreSQL and RabbitMQ restarts: a lost leader connection (which also
        releases the advisory lock) sends it back here to reconnect and compete again; a
        failed iteration is retried after a short pause, so work resumes within a second
        or two of the service's return.
        """
        failures = 0
        probes = self._probes()
        try:
            while not self.stop_event.is_set():
                self._liveness.beat()
                try:
                    with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
                        failures = 0
                        self.connected = True
                        self._compete(conn)
                except psycopg.Error as exc:
                    failures += 1
                    log.warning("scheduler.database_unreachable", error=str(exc), failures=failures)
                    self.stop_event.wait(_pause(failures))
                finally:
                    self.connected = False
        finally:
            if probes is not None:
                probes.close()

    def _compete(self, conn: psycopg.Connection) -> None:
        while not self.stop_event.is_set():
            self._liveness.beat()
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,)).fetchone()
            if row is not None and row[0]:
                log.info("scheduler.became_leader")
                self._set_leading(True)
                try:
                    self._lead(conn)
                finally:
                    self._set_leading(False)
                    if not conn.closed and not conn.broken:
                        conn.execute("SELECT pg_advisory_unlock(%s)", (LEADER_LOCK_KEY,))
                        log.info("scheduler.leadership_released")
            else:
                self.stop_event.wait(2.0)

    def _lead(self, conn: psycopg.Connection) -> None:
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        self._next = {}  # chore name → when it is due next (monotonic); all due at once
        failures = 0
        c = self._config
        while not self.stop_event.is_set():
            self._liveness.beat()
            try:
                published = relay_once(self._sessions, self._publisher, batch_size=c.batch_size)
                self._housekeeping(time.monotonic())
                # Wait for work only after a pass found nothing: under load another pass is
                # cheaper than asking when the next row is due (2/3 of a pass's cost, py-spy).
                if published == 0:
                    self._wait_for_work(conn)
                elif (pause_s := relay_pause_s(published, c.batch_size, c.gather_s)) > 0:
                    self.stop_event.wait(pause_s)
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

    def _chores(self) -> list[Chore]:
        """Leader-only housekeeping, each on its own period; disabled ones are left out."""
        c = self._config
        chores = [
            Chore("reap", c.reap_every_s, self._reap),
            Chore("prune", c.prune_every_s, self._prune),
            Chore("retain", c.retention_every_s, self._retain),
        ]
        if c.periodic:
            chores.append(Chore("periodic", c.periodic_every_s, self._submit_periodic))
        if c.oauth_sweep_every_s > 0:
            chores.append(Chore("oauth_sweep", c.oauth_sweep_every_s, self._sweep_oauth))
        if c.backup_every_s > 0:
            chores.append(Chore("backups", c.backup_every_s, self._submit_backups))
        if c.export_tick is not None and c.export_every_s > 0:
            tick = c.export_tick  # export expiry sweep + export schedules
            chores.append(Chore("exports", c.export_every_s, lambda: tick(self._sessions)))
        if c.incoming_sweep is not None and c.incoming_every_s > 0:
            sweep = c.incoming_sweep
            chores.append(Chore("incoming", c.incoming_every_s, lambda: sweep(self._sessions)))
        if c.sync_prune is not None and c.sync_prune_every_s > 0:
            prune_sync = c.sync_prune  # tombstones, batch results, conflict log, sync objects
            chores.append(
                Chore("sync_prune", c.sync_prune_every_s, lambda: prune_sync(self._sessions))
            )
        return chores

    def _housekeeping(self, now: float) -> None:
        """Run every due chore. Each is isolated: one that fails (S3 down for the export
        sweep, say) is logged and waits for its next period instead of starving the others
        or being retried on every iteration."""
        for chore in self.chores:
            if now < self._next.get(chore.name, 0.0):
                continue
            self._next[chore.name] = now + chore.every_s
            try:
                chore.run()
            except Exception:
                log.exception("scheduler.chore_failed", chore=chore.name)

    def _reap(self) -> None:
        reaped = reap_once(self._sessions, stale_s=self._config.stale_s)
        republished = republish_stuck(
            self._sessions, older_than_s=self._config.republish_queued_after_s
        )
        REAPER_ACTIONS.labels("reaped").inc(reaped)
        REAPER_ACTIONS.labels("republished").inc(republished)

    def _retain(self) -> None:
        purged = purge_once(self._sessions, self._config.retention, now=datetime.now(UTC))
        RETENTION_RUNS.labels("jobs").inc()
        RETENTION_DELETED.labels("jobs").inc(purged)

    def _submit_backups(self) -> None:
        with session_scope(self._sessions) as session:
            submit_due_backups(session, now=datetime.now(UTC))

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
            deleted = outbox_repo.prune_sent(session, cutoff)
        RETENTION_RUNS.labels("outbox").inc()
        RETENTION_DELETED.labels("outbox").inc(deleted)

    def _set_leading(self, leading: bool) -> None:
        self.leading = leading
        SCHEDULER_LEADER.set(1 if leading else 0)
