"""Per-process resources, built lazily on first use (never at import time)."""

from __future__ import annotations

import gc
import os
import socket
import threading
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings, get_settings
from shared.db.engine import libpq_dsn, make_engine, make_session_factory
from shared.jobs.runner import RunnerDeps, RunningJobs
from shared.jobs.state_writer import StateWriter
from shared.messaging.names import EVENTS_EXCHANGE
from shared.storage.base import ObjectStore


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    runner: RunnerDeps


_BUILD = threading.Lock()


def get_runtime() -> Runtime:
    """The process's runtime, built once. Worker threads ask for it concurrently on their
    first deliveries, and `lru_cache` alone may build it twice — two RunningJobs registries
    would let one thread take over a job another thread of this process is running."""
    with _BUILD:
        return _build_runtime()


@lru_cache(maxsize=1)
def _build_runtime() -> Runtime:
    settings = get_settings()
    engine = make_engine(settings.require_database_url(), application_name="conveyor-worker")
    sessions = make_session_factory(engine)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    writer = StateWriter(
        libpq_dsn(settings.require_database_url()),
        worker=worker,
        stale_s=settings.heartbeat_stale_s,
        events_exchange=EVENTS_EXCHANGE,
        gather_s=settings.state_writer_gather_ms / 1000,
    )
    runner = RunnerDeps(
        sessions=sessions,
        worker_name=worker,
        running=RunningJobs(),
        stale_s=settings.heartbeat_stale_s,
        writer=writer,
        store=get_store,
    )
    return Runtime(settings, engine, sessions, runner)


@lru_cache(maxsize=1)
def get_store() -> ObjectStore:
    """The process's S3 store, built on first use (after any fork)."""
    from shared.storage.s3 import S3Store

    return S3Store.from_settings(get_settings())


def freeze_startup_heap() -> None:
    """Exempt what a process has built by the end of its startup (modules, app, pools: a
    few hundred thousand objects that live as long as it does) from the cyclic garbage
    collector, whose older-generation passes would otherwise walk them all again and again.
    Measured on a 1,000-job submit: 31.9 ms CPU with them, 22.5 ms frozen. Call once, when
    startup is done; objects made later are collected as usual."""
    gc.freeze()
