"""Stopping and sizing figures for docs/operations.md (issue #13). Prints; asserts nothing.

- Pool stop time after SIGTERM with every thread busy on a job of `--job-ms`, against the
  same pool stopped idle in the same run (the baseline), and how many jobs were handed back.
- Memory (VmRSS) of the supervisor and each worker process, idle and under load.
- Scheduler fail-over: SIGTERM to the leader (lock released) against SIGKILL (the lock goes
  only when PostgreSQL notices the dead connection), time until the standby leads.

    python -m bench.shutdown --processes 2 --threads 8 --job-ms 2000
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

from shared.db.engine import session_scope
from shared.db.models import Job
from shared.embedded import free_port
from shared.jobs.submit import NewJob, submit_jobs
from tests.support.services import wait_for
from tests.support.stack import Stack


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _ready(port: int) -> dict[str, object]:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
    except httpx.HTTPError:
        return {}
    return dict(response.json()) | {"code": response.status_code}


def _pool(stack: Stack, processes: int, threads: int, port: int) -> subprocess.Popen[bytes]:
    args = ["worker", "--pool", "default", "--processes", str(processes)]
    args += ["--threads", str(threads), "--metrics-port", "0", "--grace-s", "30"]
    pool = stack.spawn("worker", args, CONVEYOR_PROBE_PORT=str(port))
    wait_for(lambda: _ready(port).get("code") == 200, timeout=90, what="pool ready")
    wait_for(lambda: _consumers(stack) >= processes, timeout=90, what="every process consuming")
    return pool


def _consumers(stack: Stack) -> int:
    channel = stack.amqp_channel()
    try:
        return int(channel.queue_declare("conveyor.default", passive=True).method.consumer_count)
    finally:
        channel.connection.close()


def _memory(pool: subprocess.Popen[bytes]) -> tuple[float, list[float]]:
    return _rss_mb(pool.pid), [_rss_mb(c) for c in _children(pool.pid)]


def _stop(pool: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    os.kill(pool.pid, signal.SIGTERM)
    pool.wait(120)
    return time.monotonic() - started


def _count(stack: Stack, state: str) -> int:
    with session_scope(stack.sessions) as session:
        stmt = select(func.count()).select_from(Job).where(Job.state == state)
        return int(session.execute(stmt).scalar_one())


def bench_pool(stack: Stack, processes: int, threads: int, job_ms: int) -> None:
    idle_pool = _pool(stack, processes, threads, free_port())
    idle_mem = _memory(idle_pool)
    idle_stop = _stop(idle_pool)

    busy = _pool(stack, processes, threads, free_port())
    n = processes * threads * 3
    with session_scope(stack.sessions) as session:
        submit_jobs(session, [NewJob("diag.noop", f"u{i}", {"sleep_ms": job_ms}) for i in range(n)])
    in_flight = processes * threads
    wait_for(lambda: _count(stack, "running") >= in_flight, timeout=120, what="all threads busy")
    busy_mem = _memory(busy)
    busy_stop = _stop(busy)
    finished, running = _count(stack, "succeeded"), _count(stack, "running")
    print(f"pool {processes} x {threads}, jobs of {job_ms} ms, {n} submitted")
    print(f"  stop idle (baseline):   {idle_stop:6.2f} s")
    ratio = busy_stop / idle_stop
    print(f"  stop with {in_flight} in flight: {busy_stop:6.2f} s   ratio {ratio:.2f}")
    print(f"  at stop: {finished} succeeded, {running} left running, rest handed back queued")
    for label, (parent, children) in (("idle", idle_mem), ("busy", busy_mem)):
        kids = ", ".join(f"{c:.0f}" for c in children)
        total = parent + sum(children)
        print(f"  RSS {label}: supervisor {parent:.0f} MB, workers [{kids}] MB, total {total:.0f}")


def _failover(stack: Stack, sig: int) -> float:
    ports = [free_port(), free_port()]
    first = stack.start_scheduler(CONVEYOR_PROBE_PORT=str(ports[0]))
    wait_for(lambda: _ready(ports[0]).get("leader") is True, timeout=60, what="leader")
    second = stack.start_scheduler(CONVEYOR_PROBE_PORT=str(ports[1]))
    wait_for(lambda: _ready(ports[1]).get("code") == 200, timeout=60, what="standby")
    started = time.monotonic()
    first.send_signal(sig)
    wait_for(lambda: _ready(ports[1]).get("leader") is True, timeout=120, what="takeover")
    took = time.monotonic() - started
    first.wait(30)
    stack.kill(second)
    return took


def bench_failover(stack: Stack) -> None:
    killed = _failover(stack, signal.SIGKILL)
    termed = _failover(stack, signal.SIGTERM)
    print("scheduler fail-over (standby polls the lock every 2 s)")
    print(f"  after SIGKILL (baseline): {killed:5.2f} s")
    print(f"  after SIGTERM:            {termed:5.2f} s   ratio {termed / killed:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--job-ms", type=int, default=2000)
    args = parser.parse_args()
    stack = Stack.create(Path(tempfile.mkdtemp(prefix="conveyor-bench-shutdown-")))
    try:
        stack.start_scheduler()
        bench_pool(stack, args.processes, args.threads, args.job_ms)
        stack.stop_schedulers()
        bench_failover(stack)
    finally:
        stack.close()


if __name__ == "__main__":
    main()
