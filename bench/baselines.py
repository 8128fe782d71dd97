"""Baseline throughput: plain Dramatiq and Celery (thread pool) on RabbitMQ.

Both baselines run the same no-op task, whose only work is one completion record
(see :mod:`bench._completion`: a 16-byte ``O_APPEND`` write to a tmpfs file), so the
per-task cost is tiny and identical for both systems and completion detection is
exact (prefetched-but-unacked messages are not mistaken for finished work).

Each run:

1. creates a fresh RabbitMQ vhost (``rabbitmqctl add_vhost`` + ``set_permissions``),
2. starts the workers as real subprocesses in their own process group
   (``dramatiq --processes P --threads T``; or P ``celery worker -P threads -c T``
   processes with unique node names),
3. waits until P consumers are attached to the task queue (passive ``queue.declare``
   reports the consumer count; no management plugin needed),
4. submits ``jobs`` no-op tasks from one thread over one connection, using each
   library's default publisher settings (no publisher confirms for either:
   Dramatiq ``RabbitmqBroker(confirm_delivery=False)``, Celery/kombu ``confirm_publish``
   off; persistent messages for both),
5. measures from just before the first publish until the last job has executed,
6. terminates the workers (SIGTERM, then SIGKILL on the group) and deletes the vhost.

Usage (from the repository root)::

    python -m bench.baselines --jobs 2000 --processes 2 --threads 8
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pika
import pika.exceptions

from bench import cpu
from bench._completion import AMQP_URL_ENV, DONE_FILE_ENV, CompletionLog

REPO_ROOT = Path(__file__).resolve().parent.parent

# Dramatiq: actor/queue names must match bench/_plain_dramatiq_app.py (not imported here,
# because importing it would replace the global Dramatiq broker of the calling process).
DRAMATIQ_QUEUE = "default"
DRAMATIQ_ACTOR = "bench_noop"

# Grace period between SIGTERM and SIGKILL once all jobs are done.  Dramatiq stops in ~1 s;
# an idle Celery worker only notices a warm/cold shutdown request when its event loop wakes
# up (kombu's hub polls with timeouts of up to 10 s), so it is usually SIGKILLed here, which
# is harmless: every job has already been executed and the vhost is deleted afterwards.
STOP_GRACE_S = 3.0


@dataclass(frozen=True)
class ThroughputResult:
    system: str  # "plain dramatiq" / "celery (threads)"
    jobs: int
    seconds: float  # first submit -> last job done
    submit_seconds: float = 0.0  # first submit -> last submit returned (client side only)
    cpu_ms: dict[str, float] | None = None  # per job, by component (bench/cpu.py)

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else float("inf")

    @property
    def submit_jobs_per_s(self) -> float:
        return self.jobs / self.submit_seconds if self.submit_seconds > 0 else float("inf")


# --------------------------------------------------------------------------- RabbitMQ


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(
        ["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=60
    )


def _with_vhost(amqp_url: str, vhost: str) -> str:
    parts = urlsplit(amqp_url)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


@contextlib.contextmanager
def _fresh_vhost(amqp_url: str, label: str) -> Iterator[str]:
    """Create a throwaway vhost for ``amqp_url``'s user; yield the URL pointing at it."""
    user = unquote(urlsplit(amqp_url).username or "guest")
    vhost = f"bench-{label}-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        yield _with_vhost(amqp_url, vhost)
    finally:
        _rabbitmqctl("delete_vhost", vhost)


def _consumer_count(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        try:
            return int(channel.queue_declare(queue=queue, passive=True).method.consumer_count)
        except pika.exceptions.ChannelClosedByBroker:  # queue not declared yet
            return 0
    finally:
        if connection.is_open:
            connection.close()


# --------------------------------------------------------------------------- processes


@dataclass
class _Workers:
    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]

    def check_alive(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"worker {proc.args!r} exited with {proc.returncode}:\n{_tail(log)}"
                )

    def stop(self) -> None:
        for proc in self.procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(proc, signal.SIGKILL)  # stragglers, incl. forked children
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


def _start_workers(cmds: list[list[str]], env: dict[str, str], workdir: Path) -> _Workers:
    workers = _Workers(procs=[], logs=[])
    try:
        for i, cmd in enumerate(cmds):
            log = workdir / f"worker-{i}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    cmd,
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: killpg reaches forked children
                )
            workers.procs.append(proc)
            workers.logs.append(log)
    except BaseException:
        workers.stop()
        raise
    return workers


def _wait_consuming(
    workers: _Workers, url: str, queue: str, consumers: int, deadline: float
) -> None:
    while True:
        workers.check_alive()
        n = _consumer_count(url, queue)
        if n >= consumers:
            return
        if time.monotonic() > deadline:
            logs = "\n".join(_tail(log) for log in workers.logs)
            raise TimeoutError(f"{n}/{consumers} consumers on {queue!r} before timeout:\n{logs}")
        time.sleep(0.2)


# --------------------------------------------------------------------------- harness

# submit(url, jobs, deadline) -> (t_first_submit, t_last_submit), all time.monotonic()
Submitter = Callable[[str, int, float], tuple[float, float]]


def _check_deadline(i: int, jobs: int, deadline: float) -> None:
    if i % 256 == 0 and time.monotonic() > deadline:
        raise TimeoutError(f"submitted only {i} of {jobs} jobs before timeout")


def _run(
    *,
    system: str,
    label: str,
    amqp_url: str,
    jobs: int,
    worker_cmds: list[list[str]],
    queue: str,
    consumers: int,
    submit: Submitter,
    timeout_s: float,
) -> ThroughputResult:
    if jobs < 1:
        raise ValueError("jobs must be >= 1")
    deadline = time.monotonic() + timeout_s
    shm = Path("/dev/shm")
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{label}-", dir=shm if shm.is_dir() else None))
    try:
        done = CompletionLog(workdir / "done.bin")
        with _fresh_vhost(amqp_url, label) as url:
            env = {**os.environ, AMQP_URL_ENV: url, DONE_FILE_ENV: str(done.path)}
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
            )
            workers = _start_workers(worker_cmds, env, workdir)
            try:
                _wait_consuming(workers, url, queue, consumers, deadline)
                cpu_before = cpu.sample()
                t_first, t_last_submit = submit(url, jobs, deadline)
                try:
                    completion = done.wait_for(jobs, deadline)
                except TimeoutError as exc:
                    workers.check_alive()
                    raise TimeoutError(f"{system}: {exc}") from None
                cpu_ms = cpu.per_job_ms(cpu_before, cpu.sample(), jobs)
            finally:
                workers.stop()
        return ThroughputResult(
            system=system,
            jobs=jobs,
            seconds=completion.last_done - t_first,
            submit_seconds=t_last_submit - t_first,
            cpu_ms=cpu_ms,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _submit_dramatiq(url: str, jobs: int, deadline: float) -> tuple[float, float]:
    from dramatiq import Message
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    # Library defaults: default middleware, confirm_delivery=False, persistent messages.
    broker = RabbitmqBroker(url=url)
    try:
        broker.declare_queue(DRAMATIQ_QUEUE, ensure=True)  # connect + declare off the clock
        enqueue = broker.enqueue
        t_first = time.monotonic()
        for i in range(jobs):
            _check_deadline(i, jobs, deadline)
            # Exactly what Actor.send() builds: a Message handed to Broker.enqueue.
            enqueue(Message(DRAMATIQ_QUEUE, DRAMATIQ_ACTOR, (i,), {}, {}))
        return t_first, time.monotonic()
    finally:
        broker.close()


def _submit_celery(url: str, jobs: int, deadline: float) -> tuple[float, float]:
    from bench._celery_app import TASK_NAME, make_app

    app = make_app(url)
    try:
        # One producer (one connection/channel) reused for all publishes; kombu
        # defaults: no publisher confirms, persistent delivery, queue declared once.
        with app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=3)
            send_task = app.send_task
            t_first = time.monotonic()
            for i in range(jobs):
                _check_deadline(i, jobs, deadline)
                send_task(TASK_NAME, args=(i,), producer=producer)
            return t_first, time.monotonic()
    finally:
        app.close()


def run_plain_dramatiq(
    amqp_url: str, jobs: int, processes: int, threads: int, timeout_s: float = 300
) -> ThroughputResult:
    """Plain Dramatiq: one ``dramatiq`` CLI master forking ``processes`` workers."""
    cmd = [
        sys.executable, "-m", "dramatiq", "bench._plain_dramatiq_app",
        "--processes", str(processes), "--threads", str(threads),
        "--worker-shutdown-timeout", str(int(STOP_GRACE_S * 1000 * 0.8)),
    ]  # fmt: skip
    return _run(
        system="plain dramatiq",
        label="dramatiq",
        amqp_url=amqp_url,
        jobs=jobs,
        worker_cmds=[cmd],
        queue=DRAMATIQ_QUEUE,
        consumers=processes,  # one consumer on the queue per worker process
        submit=_submit_dramatiq,
        timeout_s=timeout_s,
    )


def run_celery_threads(
    amqp_url: str, jobs: int, processes: int, threads: int, timeout_s: float = 300
) -> ThroughputResult:
    """Celery: ``processes`` separate ``celery worker -P threads -c threads`` nodes."""
    from bench._celery_app import QUEUE_NAME

    run_id = uuid.uuid4().hex[:6]
    base = [
        sys.executable, "-m", "celery", "-A", "bench._celery_app", "worker",
        "-P", "threads", "-c", str(threads), "-Q", QUEUE_NAME, "-l", "WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    cmds = [[*base, "-n", f"bench{i}-{run_id}@localhost"] for i in range(processes)]
    return _run(
        system="celery (threads)",
        label="celery",
        amqp_url=amqp_url,
        jobs=jobs,
        worker_cmds=cmds,
        queue=QUEUE_NAME,
        consumers=processes,
        submit=_submit_celery,
        timeout_s=timeout_s,
    )


# --------------------------------------------------------------------------- CLI


def _format_table(rows: list[tuple[ThroughputResult, float]]) -> str:
    header = (
        f"{'system':<18} {'jobs':>8} {'seconds':>9} {'jobs/s':>9} {'submit/s':>10}"
        f" {'run total s':>12}"
    )
    lines = [
        f"{r.system:<18} {r.jobs:>8} {r.seconds:>9.2f} {r.jobs_per_s:>9.0f} "
        f"{r.submit_jobs_per_s:>10.0f} {total:>12.1f}"
        for r, total in rows
    ]
    return "\n".join([header, "-" * len(header), *lines])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Baseline throughput: plain Dramatiq vs Celery.")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument(
        "--only", choices=["dramatiq", "celery"], help="run just one of the two baselines"
    )
    args = parser.parse_args(argv)

    runners = {"dramatiq": run_plain_dramatiq, "celery": run_celery_threads}
    rows = []
    for name, runner in runners.items():
        if args.only and name != args.only:
            continue
        t0 = time.monotonic()
        result = runner(args.amqp_url, args.jobs, args.processes, args.threads, args.timeout)
        rows.append((result, time.monotonic() - t0))
    print(f"jobs={args.jobs} processes={args.processes} threads={args.threads}")
    print(_format_table(rows))
    print(
        "seconds = first submit -> last job executed; submit/s = client publish rate;"
        " run total = incl. vhost setup, worker start/stop"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
