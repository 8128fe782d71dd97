"""A running Conveyor for one test module: database, vhost, scheduler and worker processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings
from shared.db.engine import make_engine, make_session_factory, session_scope
from shared.db.models import Job
from shared.db.repos import api_keys as api_keys_repo
from shared.db.repos import jobs as jobs_repo
from shared.db.repos import tenants as tenants_repo
from shared.embedded import EmbeddedS3
from shared.jobs.submit import NewJob, submit_jobs
from shared.storage.buckets import all_bucket_names
from shared.storage.s3 import S3Store
from tests.support.services import (
    create_database,
    create_vhost,
    delete_vhost,
    drop_database,
    wait_for,
)
from workers.cli.run import declare_broker_topology
from workers.ingress.app import create_app

TERMINAL = {"succeeded", "failed", "cancelled", "dead"}


TEST_RATE_PER_S = 10_000.0
TEST_RATE_BURST = 100_000


@dataclass
class Stack:
    db_url: str
    vhost: str
    amqp_url: str
    logs: Path
    engine: Engine
    sessions: sessionmaker[Session]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    s3: EmbeddedS3 | None = None
    bucket_prefix: str = "conveyor-"
    # Settings the in-process ingress (`client`) gets on top of the stack's own, e.g. a key ring.
    app_settings: dict[str, Any] = field(default_factory=dict)
    _client: TestClient | None = None
    _token: str | None = None

    @classmethod
    def create(cls, logs: Path, s3: EmbeddedS3 | None = None) -> Stack:
        """With `s3`, workers and the ingress get the server and fresh buckets of their own."""
        db_url = create_database()
        vhost, amqp_url = create_vhost()
        declare_broker_topology(amqp_url)
        engine = make_engine(db_url, pool_size=5)
        stack = cls(db_url, vhost, amqp_url, logs, engine, make_session_factory(engine), s3=s3)
        if s3 is not None:
            stack.bucket_prefix = f"t{uuid.uuid4().hex[:8]}-"
            for name in all_bucket_names(stack.bucket_prefix):
                stack.store.ensure_bucket(name)
        return stack

    @property
    def store(self) -> S3Store:
        assert self.s3 is not None, "Stack.create(..., s3=s3_server) for object storage"
        return S3Store.connect(self.s3.endpoint, self.s3.access_key, self.s3.secret_key)

    def _s3_env(self) -> dict[str, str]:
        if self.s3 is None:
            return {}
        return {
            "CONVEYOR_S3_ENDPOINT": self.s3.endpoint,
            "CONVEYOR_S3_ACCESS_KEY": self.s3.access_key,
            "CONVEYOR_S3_SECRET_KEY": self.s3.secret_key,
            "CONVEYOR_BUCKET_PREFIX": self.bucket_prefix,
        }

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env.update(
            CONVEYOR_ENV="test",
            CONVEYOR_DATABASE_URL=self.db_url,
            CONVEYOR_BROKER_URL=self.amqp_url,
            CONVEYOR_LOG_JSON="true",
            CONVEYOR_HEARTBEAT_INTERVAL_S="1",
            # A running job changes hands only once its heartbeat is this old: short enough
            # for recovery tests, long enough for a busy 2-core machine's heartbeat thread.
            CONVEYOR_HEARTBEAT_STALE_S="10",
            CONVEYOR_RELAY_IDLE_POLL_S="0.5",
            CONVEYOR_CANARY_INTERVAL_S="0",
            # Tests hammer one key; the rate-limit tests set their own (tests/integration/
            # test_limits.py).
            CONVEYOR_RATE_LIMIT_PER_S=str(TEST_RATE_PER_S),
            CONVEYOR_RATE_LIMIT_BURST=str(TEST_RATE_BURST),
            CONVEYOR_METRICS_CACHE_S="0",
        )
        env.update(self._s3_env())
        env.update(extra)
        return env

    def settings(self, **overrides: Any) -> Settings:
        fields: dict[str, Any] = {
            "database_url": self.db_url,
            "broker_url": self.amqp_url,
            "rate_limit_per_s": TEST_RATE_PER_S,
            "rate_limit_burst": TEST_RATE_BURST,
            "metrics_cache_s": 0,  # a test reads the gauges right after changing them
        }
        if self.s3 is not None:
            fields.update(
                s3_endpoint=self.s3.endpoint,
                s3_access_key=self.s3.access_key,
                s3_secret_key=self.s3.secret_key,
                bucket_prefix=self.bucket_prefix,
            )
        return Settings(env="test", **{**fields, **overrides})

    def spawn(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}-{len(self.processes)}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", *args],
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def cli(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        """Run `conveyor ARGS` against this stack; stdout and stderr captured as text."""
        return subprocess.run(
            [sys.executable, "-m", "workers.cli", *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_scheduler(self, **env: str) -> subprocess.Popen[bytes]:
        return self.spawn("scheduler", ["scheduler"], **env)

    def stop_schedulers(self) -> None:
        for process in self.processes:
            if "scheduler" in process.args:  # type: ignore[operator]
                self.kill(process)

    def start_worker(
        self, pool: str = "default", processes: int = 1, threads: int = 4, **env: str
    ) -> subprocess.Popen[bytes]:
        return self.spawn(
            f"worker-{pool}",
            [
                "worker",
                "--pool",
                pool,
                "--processes",
                str(processes),
                "--threads",
                str(threads),
                "--metrics-port",
                "0",
            ],
            **env,
        )

    @staticmethod
    def kill(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if process.poll() is None:
            _signal_group(process, sig)
            _reap(process)

    @property
    def client(self) -> TestClient:
        if self._client is None:
            self._client = TestClient(create_app(self.settings(**self.app_settings), self.sessions))
            self._client.__enter__()
        return self._client

    def new_api_key(
        self,
        *,
        admin: bool = False,
        scopes: list[str] | None = None,
        tenant: str = "default",
        **fields: Any,
    ) -> str:
        """A key of `tenant` (created on first use)."""
        with session_scope(self.sessions) as session:
            tenants_repo.create(session, tenant, f"Tenant {tenant}")
            return api_keys_repo.create(
                session,
                f"test-{uuid.uuid4().hex[:6]}",
                is_admin=admin,
                scopes=scopes,
                tenant_id=tenant,
                **fields,
            ).token

    @property
    def token(self) -> str:
        if self._token is None:
            self._token = self.new_api_key()
        return self._token

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def submit(
        self, kind: str = "diag.noop", payload: dict[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        body = {
            "kind": kind,
            "user_id": fields.pop("user_id", "user-1"),
            "payload": payload or {},
            **fields,
        }
        response = self.client.post("/v1/jobs", json=body, headers=self.headers())
        assert response.status_code in (200, 202), response.text
        return dict(response.json())

    def find_job(self, job_id: str | uuid.UUID) -> Job | None:
        with session_scope(self.sessions) as session:
            return jobs_repo.get(session, uuid.UUID(str(job_id)))

    def submit_internal(
        self, kind: str, payload: dict[str, Any], *, user_id: str
    ) -> dict[str, Any]:
        """What Conveyor's own services do for internal kinds: the Python publish API."""
        with session_scope(self.sessions) as session:
            [outcome] = submit_jobs(session, [NewJob(kind, user_id, payload)], source="api")
        return {"id": str(outcome.job_id)}

    def job(self, job_id: str | uuid.UUID) -> Job:
        job = self.find_job(job_id)
        assert job is not None, f"no job {job_id}"
        return job

    def events(self, job_id: str | uuid.UUID) -> list[tuple[int, str | None, str, str | None]]:
        with session_scope(self.sessions) as session:
            return [
                (e.attempt, e.from_state, e.to_state, e.reason)
                for e in jobs_repo.history_of(session, uuid.UUID(str(job_id)))
            ]

    def stored_events(
        self, job_id: str | uuid.UUID
    ) -> list[tuple[int, str | None, str, str | None]]:
        """The `job_events` rows alone (the non-happy transitions), without the row's history."""
        with session_scope(self.sessions) as session:
            return [
                (e.attempt, e.from_state, e.to_state, e.reason)
                for e in jobs_repo.stored_events_of(session, uuid.UUID(str(job_id)))
            ]

    def wait_state(
        self, job_id: str | uuid.UUID, states: set[str] | str = TERMINAL, timeout: float = 30
    ) -> Job:
        wanted = {states} if isinstance(states, str) else states
        wait_for(
            lambda: (j := self.find_job(job_id)) is not None and j.state in wanted,
            timeout=timeout,
            what=f"job {job_id} in {wanted}",
        )
        return self.job(job_id)

    def amqp_channel(self) -> pika.adapters.blocking_connection.BlockingChannel:
        connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        return connection.channel()

    def close(self) -> None:
        # All at once: each process's graceful stop takes a moment, in parallel.
        running = [p for p in self.processes if p.poll() is None]
        for process in running:
            _signal_group(process, signal.SIGTERM)
        for process in running:
            _reap(process)
        if self._client is not None:
            self._client.__exit__(None, None, None)
        self.engine.dispose()
        drop_database(self.db_url)
        delete_vhost(self.vhost)


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group exited meanwhile
        os.killpg(process.pid, sig)


def _reap(process: subprocess.Popen[bytes]) -> None:
    """Wait for a signalled process; SIGKILL its group if it does not exit in 20 s."""
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait(10)
