"""Issue #7's chaos suite: thousands of jobs through the public HTTP path while processes die.

One run (a module fixture) submits `CONVEYOR_CHAOS_JOBS` mixed `diag.noop` jobs through a real
`conveyor ingress` with idempotent client retries, to a real scheduler and worker pools, all on
the suite's own PostgreSQL cluster, RabbitMQ vhost and SeaweedFS, while a fault loop kills and
restarts things. Each test below asserts one invariant of docs/lifecycle.md on that run.
Handler runs are counted from `CONVEYOR_DIAG_TRACE_PATH`, outside Conveyor's bookkeeping.

Knobs (environment of the test run; defaults sized for a loaded 2-core CI box):
CONVEYOR_CHAOS_JOBS (5000), _CLIENTS (8), _POOLS (2), _PROCESSES (2), _THREADS (8),
_ROUNDS (2 rounds of the five faults at least; more while clients still submit),
_PG_DOWN_S (3.5), _RECOVERY_TIMEOUT_S (60), _SETTLE_TIMEOUT_S (120), _STALE_S (15),
_FAULT_BUDGET_S (240: no fault starts later; the whole module is capped at 600 s).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chaos.clients import Accepted, job_mix, run_clients
from tests.chaos.faults import ROUND, FaultLoop, FaultRecord, PidWatch, table
from tests.chaos.harness import ChaosStack
from tests.chaos.invariants import TERMINAL, JobRow, Report, check
from tests.support.services import wait_for
from workers.diag.trace import read_trace

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(600)]


def knob(name: str, default: float) -> float:
    return float(os.environ.get(f"CONVEYOR_CHAOS_{name}", default))


JOBS = int(knob("JOBS", 5000))
CLIENTS = int(knob("CLIENTS", 8))
POOLS = int(knob("POOLS", 2))
PROCESSES = int(knob("PROCESSES", 2))
THREADS = int(knob("THREADS", 8))
ROUNDS = int(knob("ROUNDS", 2))
PG_DOWN_S = knob("PG_DOWN_S", 3.5)
RECOVERY_TIMEOUT_S = knob("RECOVERY_TIMEOUT_S", 60)
SETTLE_TIMEOUT_S = knob("SETTLE_TIMEOUT_S", 120)
STALE_S = knob("STALE_S", 15)  # well above the PostgreSQL outage
FAULT_BUDGET_S = knob("FAULT_BUDGET_S", 240)  # no new fault after this


@dataclass
class ChaosRun:
    report: Report
    faults: list[FaultRecord]
    accepted: Accepted
    settled: bool


def _api_key(stack: ChaosStack) -> str:
    from shared.db.engine import make_engine, make_session_factory, session_scope
    from shared.db.repos import api_keys as api_keys_repo

    engine = make_engine(stack.db_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return api_keys_repo.create(session, "chaos", is_admin=False).token
    finally:
        engine.dispose()


def _rows(stack: ChaosStack) -> dict[str, JobRow]:
    rows = stack.execute_sql(
        "SELECT j.id::text, j.state, j.attempt, "
        "(SELECT count(*) FROM job_history h WHERE h.job_id = j.id AND h.to_state = 'succeeded') "
        "FROM jobs j"
    )
    return {str(r[0]): JobRow(str(r[0]), str(r[1]), int(str(r[2])), int(str(r[3]))) for r in rows}


def _lost_details(stack: ChaosStack, report: Report) -> list[str]:
    """The history of the first few lost jobs, to tell why from the report alone."""
    ids = [j for j, _ in report.not_terminal[:10]]
    lines = [f"accepted, no row: {report.missing[:10]}"] if report.missing else []
    if ids:
        quoted = ",".join(f"'{j}'" for j in ids)
        for row in stack.execute_sql(
            "SELECT job_id::text, attempt, from_state, to_state, reason, at FROM job_history "
            f"WHERE job_id IN ({quoted}) ORDER BY job_id, phase, seq"
        ):
            lines.append("  " + " ".join(str(c) for c in row))
    return lines


def _worker_events(root: Path) -> str:
    """How often each log event occurred in the workers (structlog names and Dramatiq's
    "Failed to process message": a delivery whose actor raised, acked if nothing fails it)."""
    counts: Counter[str] = Counter()
    for log in root.glob("worker*.log"):
        text = log.read_text(errors="replace")
        counts.update(re.findall(r'"event": "([a-z_.]+)"', text))
        counts["dramatiq: Failed to process message"] += text.count("Failed to process message")
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))


def _all_terminal(stack: ChaosStack, job_ids: list[str]) -> bool:
    try:
        rows = _rows(stack)
    except Exception:  # PostgreSQL restarting: ask again
        return False
    return all(j in rows and rows[j].state in TERMINAL for j in job_ids)


def _run(stack: ChaosStack, loop: FaultLoop, accepted: Accepted) -> bool:
    """Submit, inject the faults while jobs flow, then wait for every accepted job to end."""
    stop = threading.Event()
    clients = run_clients(
        stack.base_url,
        loop.token,
        iter(job_mix(JOBS, seed=1)),
        accepted,
        threads=CLIENTS,
        stop=stop,
    )
    # Faults must hit work in flight: start once jobs are being run.
    wait_for(lambda: stack.trace_path.exists(), timeout=120, what="first handler run")
    loop.run(ROUNDS, more=lambda: any(c.is_alive() for c in clients), budget_s=FAULT_BUDGET_S)
    for client in clients:
        client.join(timeout=SETTLE_TIMEOUT_S)
    stop.set()
    loop.heal()
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        loop.heal()  # a process that exited after the last fault
        if _all_terminal(stack, accepted.job_ids()):
            return True
        time.sleep(1)
    stack.dump_worker_stacks()
    return False


@pytest.fixture(scope="module")
def chaos(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[ChaosRun]:
    root: Path = tmp_path_factory.mktemp("chaos")
    stack = ChaosStack.create(
        root,
        {
            "CONVEYOR_HEARTBEAT_INTERVAL_S": "1",
            "CONVEYOR_HEARTBEAT_STALE_S": str(STALE_S),
            "CONVEYOR_RELAY_IDLE_POLL_S": "0.5",
        },
    )
    try:
        stack.start_all(worker_pools=POOLS, processes=PROCESSES, threads=THREADS)
        watch = PidWatch(stack)
        watch.start()
        accepted = Accepted()
        started = time.monotonic()
        loop = FaultLoop(
            stack,
            _api_key(stack),
            accepted,
            watch,
            started,
            PROCESSES,
            RECOVERY_TIMEOUT_S,
            PG_DOWN_S,
        )
        settled = _run(stack, loop, accepted)
        elapsed = time.monotonic() - started
        watch.stop.set()
        report = check(accepted.job_ids(), _rows(stack), read_trace(stack.trace_path), watch.deaths)
        lines = [
            f"chaos run: {JOBS} jobs + probes in {elapsed:.0f} s, {POOLS} pools x {PROCESSES} "
            f"processes x {THREADS} threads; client retries {accepted.retries}, "
            f"replayed {accepted.replayed}, rejected {len(accepted.rejected)}; "
            f"all terminal: {settled}",
            *table(loop.records),
            *report.lines(),
            f"worker log events: {_worker_events(root)}",
            "queues (name ready unacked consumers): " + " | ".join(stack.queue_depths()),
            *_lost_details(stack, report),
            f"logs and trace: {root}",
        ]
        (root / "report.txt").write_text("\n".join(lines) + "\n")
        capture = pytestconfig.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():  # the table is the suite's output
            print("\n" + "\n".join(lines))
        yield ChaosRun(report, loop.records, accepted, settled)
    finally:
        stack.close()


def test_every_request_was_answered_with_a_decision(chaos: ChaosRun) -> None:
    assert chaos.accepted.rejected == []
    assert len(chaos.accepted.ids) >= JOBS


def test_no_accepted_job_is_lost(chaos: ChaosRun) -> None:
    """Answered 2xx means stored; stored means it ends: no missing row, nothing stuck."""
    assert chaos.report.missing == []
    assert chaos.report.not_terminal == []


def test_each_success_is_recorded_exactly_once(chaos: ChaosRun) -> None:
    assert chaos.report.success_rows_wrong == []


def test_no_job_runs_twice_at_the_same_time(chaos: ChaosRun) -> None:
    pairs = [(a.job_id, a.attempt, b.attempt) for a, b in chaos.report.concurrent]
    assert pairs == []


def test_every_fault_is_recovered_from(chaos: ChaosRun) -> None:
    """Each fault's probe job succeeded; components that had to be restarted are noted."""
    assert {r.fault for r in chaos.faults} == set(ROUND), "not every fault ran in the budget"
    assert [r.fault for r in chaos.faults if r.recovery_s is None] == []


def test_no_process_had_to_be_restarted_by_the_suite(chaos: ChaosRun) -> None:
    """Self-healing: nothing but the scheduler kill itself needs an outside restart."""
    assert [n for r in chaos.faults for n in r.notes if " exited " in n] == []
