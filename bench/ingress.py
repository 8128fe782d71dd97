"""HTTP ingress: single-job POST /v1/jobs and POST /v1/jobs:batch, against a bare route.

The real ingress runs as `conveyor ingress` does (uvicorn, one worker process) on a fresh
database and vhost (bench/_stack.py); the baseline (bench/_bare_ingress.py) is a bare
FastAPI/uvicorn app, one worker too, whose POST /v1/jobs does one INSERT + COMMIT into a
plain table of the same database. Same run, same clients:

1. single jobs: `--clients` (32) concurrent keep-alive HTTP/1.1 clients (httpx on asyncio, one
   connection each) send `--requests` `diag.noop` jobs in all to each server; after a warm-up,
   rounds alternate between the two servers so load drifts hit both alike. Requests/s, the
   ratio (issue #11: ingress ≥ 0.7x the bare route) and p50/p99 latency per request;
2. batches: `--batches` sequential POST /v1/jobs:batch of `--batch-size` (1,000) jobs from one
   client: jobs/s (issue #11: ≥ 10,000).

The rate limiter cannot throttle the bench (CONVEYOR_RATE_LIMIT_PER_S/_BURST of a million;
every request still spends its token) and the cap on unfinished jobs is out of reach: by
default no worker drains the jobs (`--drain` starts the scheduler and a 1 x 8 `default` pool,
which then share the CPU), so every cap check counts a growing backlog, as it would behind a
stalled pool. Also printed: CPU per request of the server process, of its PostgreSQL backends
(a lower bound: pooled connections only) and of the client, since on a loaded machine a
saturated client or database caps both servers alike. Prints figures; asserts nothing.

    .venv/bin/python -m bench.ingress --requests 5000 --batches 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import text

from bench._bare_ingress import CREATE_TABLE
from bench._stack import ConveyorStack
from bench.writes import process_cpu_s
from shared.db.engine import session_scope
from shared.db.repos import api_keys as api_keys_repo
from shared.db.tenancy import DEFAULT_TENANT

UNTHROTTLED = "1000000"  # tokens/s and burst: the limiter still runs, never refuses


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    db_application: str  # application_name of its PostgreSQL connections


@dataclass
class Figures:
    requests: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] | None = None
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    db_cpu_s: float = 0.0

    def add(self, other: Figures) -> None:
        self.requests += other.requests
        self.seconds += other.seconds
        self.latencies_ms = (self.latencies_ms or []) + (other.latencies_ms or [])
        self.client_cpu_s += other.client_cpu_s
        self.server_cpu_s += other.server_cpu_s
        self.db_cpu_s += other.db_cpu_s

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms or [0.0])
        return ordered[int(q * (len(ordered) - 1))]

    def cpu_ms(self, seconds: float) -> float:
        return seconds * 1000 / self.requests


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(stack: ConveyorStack, name: str, command: list[str], application: str) -> Server:
    port = _free_port()
    process = stack.spawn([*command, "--host", "127.0.0.1", "--port", str(port)], name)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start; logs in {stack.logs}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Server(name, url, process, application)
        except httpx.TransportError:
            time.sleep(0.2)


def _db_cpu(stack: ConveyorStack, application: str) -> dict[int, float]:
    with stack.engine.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :a"),
            {"a": application},
        ).scalars()
        return {pid: process_cpu_s(pid) for pid in pids}


def _job(i: int) -> dict[str, Any]:
    return {"kind": "diag.noop", "user_id": f"user-{i % 100}", "payload": {}}


async def _post_all(clients: list[httpx.AsyncClient], path: str, bodies: list[Any]) -> list[float]:
    """POST every body once, one request at a time per client; latencies (ms)."""
    latencies: list[float] = []
    indexes = itertools.count()

    async def run(http: httpx.AsyncClient) -> None:
        while (i := next(indexes)) < len(bodies):
            started = time.perf_counter()
            r = await http.post(path, json=bodies[i])
            latencies.append((time.perf_counter() - started) * 1000)
            if r.status_code != 202:
                raise RuntimeError(f"{http.base_url}{path}: {r.status_code} {r.text[:300]}")

    await asyncio.gather(*(run(http) for http in clients))
    return latencies


async def _measure(
    stack: ConveyorStack,
    server: Server,
    clients: list[httpx.AsyncClient],
    path: str,
    bodies: list[Any],
    jobs_per_body: int = 1,
) -> Figures:
    db_before = _db_cpu(stack, server.db_application)
    server_before, client_before = process_cpu_s(server.process.pid), time.process_time()
    started = time.perf_counter()
    latencies = await _post_all(clients, path, bodies)
    seconds = time.perf_counter() - started
    db_after = _db_cpu(stack, server.db_application)
    return Figures(
        requests=len(bodies) * jobs_per_body,
        seconds=seconds,
        latencies_ms=latencies,
        client_cpu_s=time.process_time() - client_before,
        server_cpu_s=process_cpu_s(server.process.pid) - server_before,
        db_cpu_s=sum(cpu - db_before.get(pid, 0.0) for pid, cpu in db_after.items()),
    )


async def _run(
    stack: ConveyorStack, servers: list[Server], headers: dict[str, str], args: argparse.Namespace
) -> tuple[dict[str, Figures], Figures]:
    """`--clients` keep-alive clients per server, open for the whole run (the warm-up opens
    their connections): single jobs on both servers, then batches on the ingress."""
    async with contextlib.AsyncExitStack() as exits:
        clients: dict[str, list[httpx.AsyncClient]] = {}
        for server in servers:
            clients[server.name] = [
                await exits.enter_async_context(
                    httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60)
                )
                for _ in range(args.clients)
            ]
        warm_up = [_job(i) for i in range(min(args.requests, 10 * args.clients))]
        for server in servers:
            await _measure(stack, server, clients[server.name], "/v1/jobs", warm_up)
        single = {server.name: Figures() for server in servers}
        per_round = [_job(i) for i in range(args.requests // args.rounds)]
        for n in range(args.rounds):  # alternating order: bare first, then ingress first, ...
            for server in servers if n % 2 == 0 else servers[::-1]:
                figures = await _measure(stack, server, clients[server.name], "/v1/jobs", per_round)
                single[server.name].add(figures)
        ingress, one_client = servers[1], clients[servers[1].name][:1]
        batch = {"jobs": [_job(i) for i in range(args.batch_size)]}
        await _measure(stack, ingress, one_client, "/v1/jobs:batch", [batch])  # warm-up
        batches = await _measure(
            stack, ingress, one_client, "/v1/jobs:batch", [batch] * args.batches, args.batch_size
        )
    return single, batches


def _print(single: dict[str, Figures], batches: Figures, args: argparse.Namespace) -> None:
    print(
        f"\nsingle-job POST /v1/jobs: {args.requests} requests per server in {args.rounds} "
        f"round(s), {args.clients} keep-alive clients, 1 uvicorn worker each"
    )
    print(
        f"{'server':<22} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'server CPU ms/req':>18} {'PG CPU ms/req':>14} {'client CPU ms/req':>18}"
    )
    for name, f in single.items():
        print(
            f"{name:<22} {f.per_s:>8.0f} {f.percentile(0.5):>8.1f} {f.percentile(0.99):>8.1f} "
            f"{f.cpu_ms(f.server_cpu_s):>18.2f} {f.cpu_ms(f.db_cpu_s):>14.2f} "
            f"{f.cpu_ms(f.client_cpu_s):>18.2f}"
        )
    ratio = single["conveyor ingress"].per_s / single["bare INSERT route"].per_s
    print(f"conveyor ÷ bare: {ratio:.2f} (target ≥ 0.7)")
    print(
        f"\nPOST /v1/jobs:batch, {args.batches} x {args.batch_size} jobs, one client: "
        f"{batches.per_s:.0f} jobs/s (target ≥ 10,000); per batch p50 "
        f"{batches.percentile(0.5):.0f} ms, p99 {batches.percentile(0.99):.0f} ms; per job: "
        f"server CPU {batches.cpu_ms(batches.server_cpu_s):.3f} ms, "
        f"PG CPU {batches.cpu_ms(batches.db_cpu_s):.3f} ms"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="single jobs per server")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="alternations between servers")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--drain", action="store_true", help="run a scheduler and a worker")
    parser.add_argument(
        "--no-handoff",
        dest="handoff",
        action="store_false",
        help="CONVEYOR_SUBMIT_HANDOFF=false: the ingress leaves publishing to the relay",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    limits = {
        "CONVEYOR_RATE_LIMIT_PER_S": UNTHROTTLED,
        "CONVEYOR_RATE_LIMIT_BURST": UNTHROTTLED,
        "CONVEYOR_QUEUE_CAP_PER_KIND": str(10**9),
    }
    if args.batch_size > 1000:
        limits["CONVEYOR_MAX_BATCH_JOBS"] = str(args.batch_size)
    if not args.handoff:
        limits["CONVEYOR_SUBMIT_HANDOFF"] = "false"
    stack = ConveyorStack(limits)
    try:
        with session_scope(stack.sessions) as session:
            session.execute(text(CREATE_TABLE))
            token = api_keys_repo.create(session, "bench-ingress", tenant_id=DEFAULT_TENANT).token
        headers = {"Authorization": f"Bearer {token}"}
        if args.drain:
            stack.start_workers(1, 8)
        servers = [
            _start(
                stack,
                "bare INSERT route",
                [sys.executable, "-m", "bench._bare_ingress"],
                "bench-bare-ingress",
            ),
            _start(
                stack,
                "conveyor ingress",
                [sys.executable, "-m", "workers.cli", "ingress"],
                "conveyor-ingress",
            ),
        ]
        single, batches = asyncio.run(_run(stack, servers, headers, args))
        _print(single, batches, args)
        print(f"unfinished jobs at the end: {stack.unfinished()}; logs in {stack.logs}")
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
