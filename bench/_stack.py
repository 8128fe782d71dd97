"""A fresh Conveyor deployment for one bench run: its own database and RabbitMQ vhost, and
`conveyor` processes (scheduler, worker pool, ingress) started as real subprocesses with the
CLI, each in its own process group, logging to a temporary folder.

Shared by bench/throughput.py and bench/ingress.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pika
from sqlalchemy import text

from shared.config import Settings
from shared.db.engine import libpq_dsn, make_engine, make_session_factory
from shared.messaging.handoff import Handoff
from shared.messaging.publisher import AmqpPublisher
from tests.support.services import create_database, create_vhost, delete_vhost, drop_database
from workers.cli.run import declare_broker_topology

# The ingress's default (CONVEYOR_SUBMIT_HANDOFF_GRACE_S).
_HANDOFF_GRACE_S = Settings.model_fields["submit_handoff_grace_s"].default


class ConveyorStack:
    """A fresh database and vhost; processes are started on demand and stopped by close()."""

    def __init__(self, extra_env: dict[str, str] | None = None, *, handoff: bool = False) -> None:
        self.db_url = create_database("conveyor_bench")
        self.vhost, self.amqp_url = create_vhost()
        declare_broker_topology(self.amqp_url)
        self.engine = make_engine(self.db_url, pool_size=2)
        self.sessions = make_session_factory(self.engine)
        # The bench's submits publish their jobs themselves, as the ingress does by default
        # (shared/messaging/handoff.py); without, the scheduler's relay publishes them.
        self.publisher = AmqpPublisher(self.amqp_url) if handoff else None
        self.handoff = (
            Handoff(self.publisher, libpq_dsn(self.db_url), grace_s=_HANDOFF_GRACE_S)
            if self.publisher is not None
            else None
        )
        self.logs = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        self.env.update(
            CONVEYOR_DATABASE_URL=self.db_url,
            CONVEYOR_BROKER_URL=self.amqp_url,
            CONVEYOR_LOG_JSON="true",
            **(extra_env or {}),
        )
        self.processes: list[subprocess.Popen[bytes]] = []

    def spawn(self, command: list[str], name: str) -> subprocess.Popen[bytes]:
        """Run `command` (argv) with the stack's environment; output to `<logs>/<name>.log`."""
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(
            command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append(process)
        return process

    def spawn_conveyor(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        """`conveyor <args>`, as an operator starts it."""
        return self.spawn([sys.executable, "-m", "workers.cli", *args], name)

    def start_workers(self, processes: int, threads: int) -> None:
        """The scheduler (relay) and one `default` pool; returns once its consumers are up."""
        self.spawn_conveyor(["scheduler"], "scheduler")
        pool = ["--pool", "default", "--processes", str(processes), "--threads", str(threads)]
        self.spawn_conveyor(["worker", *pool, "--metrics-port", "0"], "worker")
        self._wait_for_consumers(processes)

    def _wait_for_consumers(self, count: int, timeout: float = 60) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                ok = connection.channel().queue_declare("conveyor.default", passive=True)
                if ok.method.consumer_count >= count:
                    return
                time.sleep(0.2)
            raise RuntimeError(f"workers did not start; logs in {self.logs}")
        finally:
            connection.close()

    def succeeded_since(self, since: datetime) -> int:
        """Succeeded jobs created since `since` (a range on ix_jobs_created_id: the cost does
        not grow with older, pre-filled terminal jobs)."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM jobs "
                        "WHERE created_at >= :since AND state = 'succeeded'"
                    ),
                    {"since": since},
                ).scalar_one()
            )

    def unfinished(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')")
                ).scalar_one()
            )

    def last_finished_epoch(self) -> float:
        with self.engine.connect() as conn:
            return float(
                conn.execute(
                    text("SELECT extract(epoch FROM max(finished_at)) FROM jobs")
                ).scalar_one()
            )

    def stop_processes(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def close(self) -> None:
        if self.handoff is not None and self.publisher is not None:
            self.handoff.close()
            self.publisher.close()
        self.stop_processes()
        self.engine.dispose()
        drop_database(self.db_url)
        delete_vhost(self.vhost)
