"""The scheduler's housekeeping: every due chore runs, a failing one starves nothing."""

from __future__ import annotations

from sqlalchemy.orm import sessionmaker

from shared.messaging.publisher import StubPublisher
from workers.scheduler.service import Chore, Scheduler, SchedulerConfig


def scheduler() -> Scheduler:
    # Never connects: only the housekeeping loop is exercised here.
    return Scheduler("postgresql://unused", sessionmaker(), StubPublisher(None), SchedulerConfig())  # type: ignore[arg-type]


def test_a_failing_chore_neither_starves_the_others_nor_retries_before_its_period() -> None:
    runs: list[str] = []

    def boom() -> None:
        runs.append("boom")
        raise RuntimeError("S3 is down")

    s = scheduler()
    s.chores = [Chore("boom", 10, boom), Chore("after", 10, lambda: runs.append("after"))]
    s._housekeeping(now=100.0)
    assert runs == ["boom", "after"]  # the one after a failure still ran
    s._housekeeping(now=105.0)
    assert runs == ["boom", "after"]  # neither is due again yet; the failure is not hot-retried
    s._housekeeping(now=110.0)
    assert runs == ["boom", "after", "boom", "after"]


def test_disabled_chores_are_not_scheduled() -> None:
    names = {c.name for c in scheduler().chores}
    assert names == {"reap", "prune", "retain"}  # the defaults turn the optional ones off
    enabled = Scheduler(
        "postgresql://unused",
        sessionmaker(),
        StubPublisher(None),  # type: ignore[arg-type]
        SchedulerConfig(
            oauth_sweep_every_s=30,
            backup_every_s=60,
            sync_prune_every_s=3600,
            sync_prune=lambda sessions: None,
        ),
    )
    assert {"oauth_sweep", "backups", "sync_prune"} <= {c.name for c in enabled.chores}


def test_the_incoming_sweep_is_a_chore_when_configured() -> None:
    swept: list[object] = []
    config = SchedulerConfig(incoming_every_s=300, incoming_sweep=swept.append)
    s = Scheduler("postgresql://unused", sessionmaker(), StubPublisher(None), config)  # type: ignore[arg-type]
    [chore] = [c for c in s.chores if c.name == "incoming"]
    assert chore.every_s == 300
    chore.run()
    assert len(swept) == 1  # called with the scheduler's session factory


def test_the_retention_period_comes_from_the_setting() -> None:
    from shared.config import Settings

    config = SchedulerConfig.from_settings(Settings(env="test", job_retention_interval_s=7.5))
    s = Scheduler("postgresql://unused", sessionmaker(), StubPublisher(None), config)  # type: ignore[arg-type]
    [chore] = [c for c in s.chores if c.name == "retain"]
    assert chore.every_s == 7.5


def test_the_relay_gathers_only_after_a_partial_batch_of_several_rows() -> None:
    """A steady flow waits for more rows; a lone row (quiet system) and a full batch
    (backlog) go on at once, so neither light-load latency nor a backlog's drain suffers."""
    from shared.config import Settings
    from workers.scheduler.relay import relay_pause_s

    gather_s = SchedulerConfig.from_settings(Settings(env="test", relay_gather_ms=5)).gather_s
    assert gather_s == 0.005
    assert relay_pause_s(1, 500, gather_s) == 0.0
    assert relay_pause_s(2, 500, gather_s) == gather_s
    assert relay_pause_s(499, 500, gather_s) == gather_s
    assert relay_pause_s(500, 500, gather_s) == 0.0
