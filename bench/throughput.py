"""End-to-end throughput and latency: Conveyor vs plain Dramatiq vs Celery, same run.

Conveyor: `diag.noop` jobs submitted in batches through the Python publish API (job row +
outbox row per job, one transaction per 1,000), published by the scheduler with confirms,
run by `conveyor worker` (P processes x T threads) with every transition recorded in
PostgreSQL. The latency samples and the background load are single-job submits handed off
as the ingress does (published by this process after each commit; `--no-handoff`: by the
relay). Baselines (bench/baselines.py): the same no-op on plain Dramatiq and Celery
(thread pool), same RabbitMQ, same P and T, no state. Prints figures; asserts nothing.

Also (issue #11): `--terminal N` runs Conveyor a second time, on a fresh database that
already holds N succeeded jobs (bench/_load.py), and prints the ratio to the empty-table run;
`--background-rate R` measures the submit → succeeded latency again while a background
submitter keeps R jobs/s flowing (`half`: half the throughput the run just measured), in
one transaction per `--background-tick` (0.1 s: bursts; 0.005 s: a near-steady flow).

    python -m bench.throughput --jobs 20000 --processes 2 --threads 8
    python -m bench.throughput --jobs 20000 --terminal 1000000 --background-rate half
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from bench import cpu
from bench._load import BackgroundLoad, prefill_terminal
from bench._stack import ConveyorStack
from bench.baselines import ThroughputResult, run_celery_threads, run_plain_dramatiq
from bench.writes import WriteCounter
from shared.db.engine import session_scope
from shared.jobs.submit import NewJob, submit_jobs
from tests.support.services import AMQP_BASE_URL

BATCH = 1000
LOAD_WARMUP_S = 2.0  # background load runs this long before the latency samples start


@dataclass(frozen=True)
class Latency:
    samples: int
    p50_ms: float
    p99_ms: float
    # Where it went: submit → claimed (outbox, relay, RabbitMQ, the worker's queue) and
    # claimed → succeeded (the handler, the success write).
    to_claim: tuple[float, float] = (0.0, 0.0)  # p50, p99 ms
    to_success: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Loaded:
    """Latency measured while a background submitter ran."""

    latency: Latency
    rate_per_s: float  # asked for
    achieved_per_s: float  # submitted
    backlog: int  # unfinished jobs when the last sample had finished


@dataclass(frozen=True)
class ConveyorRun:
    result: ThroughputResult
    latency: Latency
    loaded: Loaded | None
    writes: list[str]
    prefill_s: float | None = None


def run_conveyor(
    jobs: int,
    processes: int,
    threads: int,
    *,
    terminal: int = 0,
    background_rate: str | None = None,
    background_tick_s: float = 0.1,
    timeout_s: float = 900,
    extra_env: dict[str, str] | None = None,
    handoff: bool = True,
) -> ConveyorRun:
    """One Conveyor run on a fresh database (pre-filled with `terminal` succeeded jobs)."""
    stack = ConveyorStack(extra_env, handoff=handoff)
    try:
        prefill_s = prefill_terminal(stack.engine, terminal) if terminal else None
        stack.start_workers(processes, threads)
        counter = WriteCounter(stack.db_url)
        try:
            result = _drain(stack, jobs, timeout_s)
            latency = _light_load_latency(stack)
            loaded, background = None, 0
            if background_rate is not None:
                rate = _rate(background_rate, result)
                loaded, background = _latency_under_load(stack, rate, background_tick_s, timeout_s)
            total = jobs + latency.samples + background
            cpu = counter.backend_cpu_line(total)
            # Backends flush their counters when they exit: stop the processes, then read them.
            stack.stop_processes()
            stack.engine.dispose()
            return ConveyorRun(result, latency, loaded, counter.report(total, cpu), prefill_s)
        finally:
            counter.close()
    finally:
        stack.close()


def _drain(stack: ConveyorStack, jobs: int, timeout_s: float) -> ThroughputResult:
    since = datetime.now(UTC) - timedelta(seconds=1)
    cpu_before = cpu.sample()
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
    while stack.succeeded_since(since) < jobs:
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out; logs in {stack.logs}")
        time.sleep(0.5)
    return ThroughputResult(
        "conveyor",
        jobs,
        stack.last_finished_epoch() - started,
        submitted - started,
        cpu.per_job_ms(cpu_before, cpu.sample(), jobs),
    )


def _rate(background_rate: str, result: ThroughputResult) -> float:
    """`half`: half the throughput just measured (the issue's background load)."""
    if background_rate == "half":
        return result.jobs_per_s / 2
    return float(background_rate)


def _latency_under_load(
    stack: ConveyorStack, rate_per_s: float, tick_s: float, timeout_s: float
) -> tuple[Loaded, int]:
    """Light-load latency while `rate_per_s` background jobs/s flow; then waits for the
    background jobs to finish. Returns the figures and how many background jobs ran."""
    with BackgroundLoad(stack.sessions, rate_per_s, tick_s, stack.handoff) as load:
        time.sleep(LOAD_WARMUP_S)
        latency = _light_load_latency(stack)
        backlog = stack.unfinished()
    deadline = time.monotonic() + timeout_s
    while stack.unfinished():
        if time.monotonic() > deadline:
            raise RuntimeError(f"background jobs did not finish; logs in {stack.logs}")
        time.sleep(0.5)
    return Loaded(latency, rate_per_s, load.achieved_per_s, backlog), load.sent


def _light_load_latency(
    stack: ConveyorStack, samples: int = 200, rate_per_s: float = 50
) -> Latency:
    """One job per transaction at a steady, light rate; submit → succeeded per job."""
    ids = []
    for _ in range(samples):
        with session_scope(stack.sessions) as session:
            [outcome] = submit_jobs(
                session, [NewJob("diag.noop", "latency")], handoff=stack.handoff
            )
        ids.append(outcome.job_id)
        time.sleep(1 / rate_per_s)
    while True:
        with stack.engine.connect() as conn:
            rows = (
                conn.execute(
                    text(
                        "SELECT extract(epoch FROM finished_at - created_at) * 1000, "
                        "extract(epoch FROM started_at - created_at) * 1000, "
                        "extract(epoch FROM finished_at - started_at) * 1000 FROM jobs "
                        "WHERE id = ANY(:ids) AND state = 'succeeded'"
                    ),
                    {"ids": ids},
                )
                .tuples()
                .all()
            )
        if len(rows) == samples:
            break
        time.sleep(0.2)
    total, to_claim, to_success = (_percentiles([float(r[i]) for r in rows]) for i in range(3))
    return Latency(samples, *total, to_claim=to_claim, to_success=to_success)


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument(
        "--no-handoff",
        dest="handoff",
        action="store_false",
        help="leave every job message to the scheduler's relay (the submit hand-off is the "
        "ingress's default, shared/messaging/handoff.py)",
    )
    parser.add_argument(
        "--completion-events",
        help='CONVEYOR_COMPLETION_EVENTS for the workers, e.g. \'{"*": ["failed"]}\'',
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for Conveyor's processes (repeatable), e.g. CONVEYOR_RELAY_GATHER_MS=0",
    )
    parser.add_argument(
        "--terminal",
        type=int,
        default=0,
        metavar="N",
        help="also run Conveyor on a database pre-filled with N succeeded jobs (same run)",
    )
    parser.add_argument(
        "--background-rate",
        metavar="R",
        help="also measure the latency while R jobs/s flow in the background; "
        "'half': half the throughput just measured",
    )
    parser.add_argument(
        "--background-tick",
        type=float,
        default=0.1,
        metavar="S",
        help="the background load submits once per S seconds (default 0.1: bursts)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env if "=" in item)
    if len(env) != len(args.env):
        parser.error("--env takes NAME=VALUE")
    if args.completion_events:
        env["CONVEYOR_COMPLETION_EVENTS"] = args.completion_events
    runs = [("conveyor", 0)]
    if args.terminal:
        runs.append((f"conveyor, {args.terminal} terminal", args.terminal))
    measured: dict[str, ConveyorRun] = {}
    background_rate = args.background_rate
    for name, terminal in runs:
        run = run_conveyor(
            args.jobs,
            args.processes,
            args.threads,
            terminal=terminal,
            background_rate=background_rate,
            background_tick_s=args.background_tick,
            extra_env=env,
            handoff=args.handoff,
        )
        measured[name] = run
        if run.loaded is not None:  # `half` of the first run: the same load for the next one
            background_rate = str(run.loaded.rate_per_s)
        if run.prefill_s is not None:
            print(f"{name}: pre-filled in {run.prefill_s:.1f} s (insert + vacuum analyze)")
        print(f"{name}: {run.result.jobs_per_s:.0f} jobs/s", *run.writes, sep="\n", flush=True)
    rows = [replace(run.result, system=name) for name, run in measured.items()]
    if not args.skip_baselines:
        base = AMQP_BASE_URL + "/"
        rows.append(run_plain_dramatiq(base, args.jobs, args.processes, args.threads))
        rows.append(run_celery_threads(base, args.jobs, args.processes, args.threads))
    _print_table(args, rows)
    for name, run in measured.items():
        _print_latency(name, run)
    return 0


def _print_table(args: argparse.Namespace, rows: list[ThroughputResult]) -> None:
    conveyor = rows[0]
    print(
        f"\njobs={args.jobs} processes={args.processes} threads={args.threads} "
        f"cores={os.cpu_count()}"
    )
    print(f"{'system':<28} {'seconds':>9} {'jobs/s':>9} {'submit/s':>10} {'conveyor ÷ it':>14}")
    for r in rows:
        ratio = conveyor.jobs_per_s / r.jobs_per_s
        print(
            f"{r.system:<28} {r.seconds:>9.2f} {r.jobs_per_s:>9.0f} "
            f"{r.submit_jobs_per_s:>10.0f} {ratio:>14.2f}"
        )
    print("CPU per job, ms, first submit → last job done (bench/cpu.py):")
    for r in rows:
        if r.cpu_ms is not None:
            print(f"  {r.system:<26} {cpu.describe(r.cpu_ms)}")
    if args.terminal:
        ratio = rows[1].jobs_per_s / conveyor.jobs_per_s
        print(f"with {args.terminal} terminal jobs ÷ empty table: {ratio:.2f} (target ≥ 0.85)")


def _print_latency(name: str, run: ConveyorRun) -> None:
    lat = run.latency
    print(
        f"{name} submit→succeeded at {lat.samples} jobs, 50/s: "
        f"p50 {lat.p50_ms:.1f} ms, p99 {lat.p99_ms:.1f} ms {_stages(lat)}"
    )
    if run.loaded is not None:
        loaded, lat = run.loaded, run.loaded.latency
        print(
            f"{name} the same under {loaded.rate_per_s:.0f} background jobs/s "
            f"({loaded.achieved_per_s:.0f}/s submitted, {loaded.backlog} unfinished at the "
            f"end): p50 {lat.p50_ms:.1f} ms, p99 {lat.p99_ms:.1f} ms {_stages(lat)}"
        )


def _stages(lat: Latency) -> str:
    return (
        f"(submit→claimed {lat.to_claim[0]:.1f} / {lat.to_claim[1]:.1f}, "
        f"claimed→succeeded {lat.to_success[0]:.1f} / {lat.to_success[1]:.1f})"
    )


if __name__ == "__main__":
    raise SystemExit(main())
