"""The chaos suite's own Conveyor: PostgreSQL cluster, SeaweedFS, vhost and real processes.

Everything is started by the suite (nothing shared is restarted): a PostgreSQL cluster on a
free port (`PgCluster`), a SeaweedFS restarted on the same ports, a fresh RabbitMQ vhost, and
`conveyor ingress`, `conveyor scheduler` and `conveyor worker` processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import psycopg

from shared.embedded import EmbeddedS3, free_port, start_seaweedfs
from shared.storage.buckets import all_bucket_names
from shared.storage.s3 import S3Store
from tests.support.pg_cluster import PgCluster
from tests.support.services import create_vhost, delete_vhost, rabbitmqctl, wait_for
from tests.support.stack import TEST_RATE_BURST, TEST_RATE_PER_S
from workers.cli.run import declare_broker_topology

STARTUP_TIMEOUT_S = 120  # a loaded 2-core box: imports alone can take seconds


@dataclass
class Process:
    name: str
    args: list[str]
    popen: subprocess.Popen[bytes]
    restarts: int = 0

    def alive(self) -> bool:
        return self.popen.poll() is None

    def children(self) -> list[psutil.Process]:
        try:
            return list(psutil.Process(self.popen.pid).children(recursive=False))
        except psutil.NoSuchProcess:
            return []


@dataclass
class ChaosStack:
    root: Path
    pg: PgCluster
    db_url: str
    s3: EmbeddedS3
    vhost: str
    amqp_url: str
    env_overrides: dict[str, str]
    bucket_prefix: str = field(default_factory=lambda: f"chaos{uuid.uuid4().hex[:6]}-")
    ingress_port: int = field(default_factory=free_port)
    processes: dict[str, Process] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path, env_overrides: dict[str, str]) -> ChaosStack:
        pg = PgCluster.create(root / "pg")
        try:
            db_url = pg.create_database("chaos")
            s3 = start_seaweedfs(root / "s3")
        except BaseException:
            pg.destroy()
            raise
        vhost, amqp_url = create_vhost()
        stack = cls(root, pg, db_url, s3, vhost, amqp_url, env_overrides)
        try:
            declare_broker_topology(amqp_url)
        except BaseException:
            stack.close()
            raise
        for name in all_bucket_names(stack.bucket_prefix):
            stack.store().ensure_bucket(name)
        return stack

    @property
    def trace_path(self) -> Path:
        return self.root / "trace.jsonl"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    def store(self) -> S3Store:
        return S3Store.connect(self.s3.endpoint, self.s3.access_key, self.s3.secret_key)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env.update(
            CONVEYOR_ENV="test",
            CONVEYOR_DATABASE_URL=self.db_url,
            CONVEYOR_BROKER_URL=self.amqp_url,
            CONVEYOR_LOG_JSON="true",
            CONVEYOR_S3_ENDPOINT=self.s3.endpoint,
            CONVEYOR_S3_ACCESS_KEY=self.s3.access_key,
            CONVEYOR_S3_SECRET_KEY=self.s3.secret_key,
            CONVEYOR_BUCKET_PREFIX=self.bucket_prefix,
            CONVEYOR_DIAG_TRACE_PATH=str(self.trace_path),
            CONVEYOR_CANARY_INTERVAL_S="0",
            CONVEYOR_OAUTH_SWEEP_INTERVAL_S="0",
            # The suite's clients submit thousands of jobs a minute on one key: faults are
            # under test here, not the rate limit (tests/integration/test_limits.py).
            CONVEYOR_RATE_LIMIT_PER_S=str(TEST_RATE_PER_S),
            CONVEYOR_RATE_LIMIT_BURST=str(TEST_RATE_BURST),
        )
        env.update(self.env_overrides)
        return env

    # processes ---------------------------------------------------------------------------

    def spawn(self, name: str, args: list[str]) -> Process:
        previous = self.processes.get(name)
        log = (self.root / f"{name}.log").open("ab")
        popen = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", *args],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill it with its children
        )
        process = Process(name, args, popen, previous.restarts + 1 if previous else 0)
        self.processes[name] = process
        return process

    def start_all(self, *, worker_pools: int, processes: int, threads: int) -> None:
        self.spawn("ingress", ["ingress", "--port", str(self.ingress_port)])
        self.spawn("scheduler", ["scheduler"])
        for i in range(worker_pools):
            self.spawn(
                f"worker{i}",
                [
                    "worker",
                    "--pool",
                    "default",
                    "--processes",
                    str(processes),
                    "--threads",
                    str(threads),
                    "--metrics-port",
                    "0",
                ],
            )
        wait_for(self.ingress_up, timeout=STARTUP_TIMEOUT_S, interval=0.3, what="ingress")

    def restart(self, name: str) -> Process:
        old = self.processes[name]
        self.kill_group(old, signal.SIGKILL)
        return self.spawn(name, old.args)

    @staticmethod
    def kill_group(process: Process, sig: int = signal.SIGTERM) -> None:
        if process.alive():
            try:
                os.killpg(process.popen.pid, sig)
                process.popen.wait(30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.wait(10)

    def ingress_up(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    # faults ------------------------------------------------------------------------------

    def close_amqp_connections(self) -> None:
        rabbitmqctl("close_all_connections", "-p", self.vhost, "chaos suite")

    def restart_s3(self) -> None:
        """Stop SeaweedFS and start it again on the same ports and data (clients keep URLs)."""
        args = [str(a) for a in self.s3.process.args]  # type: ignore[union-attr]
        self.s3.stop()
        log = self.s3.log_path.open("ab")
        self.s3.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_for(self.s3_up, timeout=STARTUP_TIMEOUT_S, interval=0.3, what="S3 back")

    def s3_up(self) -> bool:
        try:
            self.store().put_bytes(f"{self.bucket_prefix}diag", "probe", b"probe")
            return True
        except Exception:  # any S3/HTTP error: not up yet
            return False

    def queue_depths(self) -> list[str]:
        """Each queue's ready/unacked counts and consumers, to tell where stuck jobs wait."""
        try:
            out = rabbitmqctl(
                "list_queues",
                "-p",
                self.vhost,
                "name",
                "messages_ready",
                "messages_unacknowledged",
                "consumers",
            )
        except Exception as exc:  # diagnostics only
            return [f"list_queues failed: {exc}"]
        return [line for line in out.splitlines() if line.strip()]

    def dump_worker_stacks(self) -> list[Path]:
        """Thread stacks of every worker process (py-spy, if installed): why work is stuck."""
        py_spy = Path(sys.executable).parent / "py-spy"
        if not py_spy.exists():
            return []
        dumps = []
        for name, process in self.processes.items():
            if not name.startswith("worker"):
                continue
            for child in [psutil.Process(process.popen.pid), *process.children()]:
                out = self.root / f"stacks-{name}-{child.pid}.txt"
                with out.open("wb") as f:
                    subprocess.run(
                        [str(py_spy), "dump", "--pid", str(child.pid)],
                        stdout=f,
                        stderr=subprocess.STDOUT,
                        timeout=60,
                        check=False,
                    )
                dumps.append(out)
        return dumps

    def execute_sql(self, sql: str) -> list[tuple[object, ...]]:
        with psycopg.connect(self.db_url.replace("+psycopg", ""), connect_timeout=5) as conn:
            return list(conn.execute(sql).fetchall())

    def close(self) -> None:
        for process in self.processes.values():
            self.kill_group(process)
        self.s3.stop()
        self.pg.destroy()
        delete_vhost(self.vhost)


def now_s() -> float:
    return time.monotonic()
