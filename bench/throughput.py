"""End-to-end throughput and latency: Conveyor vs plain Dramatiq vs Celery, same run.

Conveyor: `diag.noop` jobs submitted in batches through the Python publish API (job row +
outbox row per job, one transaction per 1,000), published by the scheduler with confirms,
run by `conveyor worker` (P processes x T threads) with every transition recorded in
PostgreSQL. Baselines (bench/baselines.py): the same no-op on plain Dramatiq and Celery
(thread pool), same RabbitMQ, same P and T, no state. Prints figures; asserts nothing.

    python -m bench.throughput --jobs 20000 --processes 2 --threads 8
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pika
from sqlalchemy import text

from bench.baselines import ThroughputResult, run_celery_threads, run_plain_dramatiq
from bench.writes import WriteCounter
from shared.db.engine import make_engine, make_session_factory, session_scope
from shared.jobs.submit import NewJob, submit_jobs
from tests.support.services import (
    AMQP_BASE_URL,
    create_database,
    create_vhost,
    delete_vhost,
    drop_database,
)
from workers.cli.run import declare_broker_topology

BATCH = 1000


@dataclass(frozen=True)
class Latency:
    samples: int
    p50_ms: float
    p99_ms: float


class ConveyorStack:
    """A fresh database and vhost with a scheduler and one worker pool as subprocesses."""

    def __init__(self, processes: int, threads: int, extra_env: dict[str, str]) -> None:
        self.db_url = create_database("conveyor_bench")
        self.vhost, self.amqp_url = create_vhost()
        declare_broker_topology(self.amqp_url)
        self.engine = make_engine(self.db_url, pool_size=2)
        self.sessions = make_session_factory(self.engine)
        self.logs = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env.update(
            CONVEYOR_DATABASE_URL=self.db_url,
            CONVEYOR_BROKER_URL=self.amqp_url,
            CONVEYOR_LOG_JSON="true",
            **extra_env,
        )
        self.processes = [
            self._spawn(["scheduler"], env, "scheduler"),
            self._spawn(
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
                env,
                "worker",
            ),
        ]
        self._wait_for_consumers(processes)

    def _spawn(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "workers.cli", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

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

    def succeeded(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM jobs WHERE state = 'succeeded'")
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
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)

    def close(self) -> None:
        self.stop_processes()
        self.engine.dispose()
        drop_database(self.db_url)
        delete_vhost(self.vhost)


def run_conveyor(
    jobs: int,
    processes: int,
    threads: int,
    timeout_s: float = 900,
    extra_env: dict[str, str] | None = None,
) -> tuple[ThroughputResult, Latency, list[str]]:
    stack = ConveyorStack(processes, threads, extra_env or {})
    counter = WriteCounter(stack.db_url)
    try:
        started = time.time()
        for offset in range(0, jobs, BATCH):
            with session_scope(stack.sessions) as session:
                submit_jobs(
                    session,
                    [
                        NewJob("diag.noop", f"user-{i % 100}")
                        for i in range(offset, min(jobs, offset + BATCH))
                    ],
                )
        submitted = time.time()
        deadline = time.monotonic() + timeout_s
        while stack.succeeded() < jobs:
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out; logs in {stack.logs}")
            time.sleep(0.5)
        result = ThroughputResult(
            "conveyor", jobs, stack.last_finished_epoch() - started, submitted - started
        )
        latency = _light_load_latency(stack)
        cpu = counter.backend_cpu_line(jobs + latency.samples)
        # Backends flush their counters when they exit: stop the processes, then read them.
        stack.stop_processes()
        stack.engine.dispose()
        return result, latency, counter.report(jobs + latency.samples, cpu)
    finally:
        counter.close()
        stack.close()


def _light_load_latency(
    stack: ConveyorStack, samples: int = 200, rate_per_s: float = 50
) -> Latency:
    """One job per transaction at a steady, light rate; submit → succeeded per job."""
    ids = []
    for _ in range(samples):
        with session_scope(stack.sessions) as session:
            [outcome] = submit_jobs(session, [NewJob("diag.noop", "latency")])
        ids.append(outcome.job_id)
        time.sleep(1 / rate_per_s)
    while True:
        with stack.engine.connect() as conn:
            rows = (
                conn.execute(
                    text(
                        "SELECT extract(epoch FROM finished_at - created_at) * 1000 FROM jobs "
                        "WHERE id = ANY(:ids) AND state = 'succeeded'"
                    ),
                    {"ids": ids},
                )
                .scalars()
                .all()
            )
        if len(rows) == samples:
            break
        time.sleep(0.2)
    ordered = sorted(float(r) for r in rows)
    return Latency(samples, statistics.median(ordered), ordered[int(0.99 * (samples - 1))])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument(
        "--completion-events",
        help='CONVEYOR_COMPLETION_EVENTS for the workers, e.g. \'{"*": ["failed"]}\'',
    )
    args = parser.parse_args(argv)

    env = {}
    if args.completion_events:
        env["CONVEYOR_COMPLETION_EVENTS"] = args.completion_events
    conveyor, latency, writes = run_conveyor(args.jobs, args.processes, args.threads, extra_env=env)
    print(f"conveyor: {conveyor.jobs_per_s:.0f} jobs/s", "\n".join(writes), sep="\n", flush=True)
    rows = [conveyor]
    if not args.skip_baselines:
        base = AMQP_BASE_URL + "/"
        rows.append(run_plain_dramatiq(base, args.jobs, args.processes, args.threads))
        rows.append(run_celery_threads(base, args.jobs, args.processes, args.threads))
    print(
        f"\njobs={args.jobs} processes={args.processes} threads={args.threads} "
        f"cores={os.cpu_count()}"
    )
    print(f"{'system':<18} {'seconds':>9} {'jobs/s':>9} {'submit/s':>10} {'conveyor ÷ it':>14}")
    for r in rows:
        ratio = conveyor.jobs_per_s / r.jobs_per_s
        print(
            f"{r.system:<18} {r.seconds:>9.2f} {r.jobs_per_s:>9.0f} "
            f"{r.submit_jobs_per_s:>10.0f} {ratio:>14.2f}"
        )
    print(
        f"conveyor submit→succeeded at {latency.samples} jobs, 50/s: "
        f"p50 {latency.p50_ms:.1f} ms, p99 {latency.p99_ms:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
