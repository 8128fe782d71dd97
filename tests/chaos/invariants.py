"""What the chaos suite checks, as pure functions over the external trace and the job rows.

No services here: `test_invariants.py` proves the detectors on hand-made records.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from workers.diag.trace import Execution

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "dead"})


@dataclass(frozen=True)
class JobRow:
    job_id: str
    state: str
    attempt: int
    successes: int  # `succeeded` entries in the job's history (view job_history)


@dataclass
class Report:
    accepted: int = 0
    states: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # accepted (2xx), no row
    not_terminal: list[tuple[str, str]] = field(default_factory=list)
    success_rows_wrong: list[tuple[str, str, int]] = field(default_factory=list)
    concurrent: list[tuple[Execution, Execution]] = field(default_factory=list)
    executions: int = 0
    reruns_after_success: int = 0  # ran again after a run that returned: a lost commit
    same_attempt_twice: int = 0
    claims_without_run: int = 0  # attempts used up with no handler start in the trace
    unfinished_runs: int = 0  # a start with no end: the process died mid-run

    @property
    def lost(self) -> int:
        return len(self.missing) + len(self.not_terminal)

    def lines(self) -> list[str]:
        return [
            f"accepted jobs: {self.accepted}   final states: {dict(sorted(self.states.items()))}",
            f"lost: {self.lost} (no row: {len(self.missing)}, "
            f"not terminal: {len(self.not_terminal)})",
            f"wrong number of succeeded rows: {len(self.success_rows_wrong)}",
            f"handler runs: {self.executions}   concurrent double runs: {len(self.concurrent)}",
            f"sequential re-runs after a completed run: {self.reruns_after_success}   "
            f"same attempt run twice: {self.same_attempt_twice}",
            f"claims without a handler run: {self.claims_without_run}   "
            f"runs cut by a process death: {self.unfinished_runs}",
            *(f"  concurrent: {_pair(a, b)}" for a, b in self.concurrent[:10]),
        ]


def _pair(a: Execution, b: Execution) -> str:
    def one(e: Execution) -> str:
        end = "killed" if e.end_ns is None else f"+{(e.end_ns - a.start_ns) / 1e9:.3f}s"
        return f"attempt {e.attempt} pid {e.pid} +{(e.start_ns - a.start_ns) / 1e9:.3f}s..{end}"

    return f"job {a.job_id}: {one(a)} / {one(b)}"


def run_end(execution: Execution, deaths: Mapping[int, int]) -> int | None:
    """When a run stopped: its `end` line, else its process's death (None: unknown, alive)."""
    if execution.end_ns is not None:
        return execution.end_ns
    return deaths.get(execution.pid)


def concurrent_runs(
    executions: Iterable[Execution], deaths: Mapping[int, int]
) -> list[tuple[Execution, Execution]]:
    """Pairs of runs of one job whose [start, end] intervals overlap.

    A run with no end line lasted until its process died (`deaths`: pid → time_ns); if that is
    unknown too, it is taken as still running, so any later run of the job overlaps it.
    """
    by_job: dict[str, list[Execution]] = defaultdict(list)
    for execution in executions:
        by_job[execution.job_id].append(execution)
    pairs = []
    for runs in by_job.values():
        runs.sort(key=lambda e: e.start_ns)
        for i, first in enumerate(runs):
            end = run_end(first, deaths)
            for later in runs[i + 1 :]:
                if end is None or later.start_ns < end:
                    pairs.append((first, later))
    return pairs


def _rerun_counts(runs: list[Execution]) -> tuple[int, int]:
    after_success = 0
    completed = False
    attempts: set[int] = set()
    twice = 0
    for run in sorted(runs, key=lambda e: e.start_ns):
        if completed:
            after_success += 1
        completed = completed or run.ok is True
        twice += run.attempt in attempts
        attempts.add(run.attempt)
    return after_success, twice


def check(
    accepted: Iterable[str],
    rows: Mapping[str, JobRow],
    executions: list[Execution],
    deaths: Mapping[int, int],
) -> Report:
    """Compare what clients were promised (2xx ids) with the rows and the external trace."""
    report = Report(executions=len(executions))
    by_job: dict[str, list[Execution]] = defaultdict(list)
    for execution in executions:
        by_job[execution.job_id].append(execution)
    for job_id in sorted(set(accepted)):
        report.accepted += 1
        row = rows.get(job_id)
        if row is None:
            report.missing.append(job_id)
            continue
        report.states[row.state] = report.states.get(row.state, 0) + 1
        if row.state not in TERMINAL:
            report.not_terminal.append((job_id, row.state))
        if row.successes != (1 if row.state == "succeeded" else 0):
            report.success_rows_wrong.append((job_id, row.state, row.successes))
        runs = by_job.get(job_id, [])
        after_success, twice = _rerun_counts(runs)
        report.reruns_after_success += after_success
        report.same_attempt_twice += twice
        report.claims_without_run += max(0, row.attempt - len({r.attempt for r in runs}))
        report.unfinished_runs += sum(r.end_ns is None for r in runs)
    report.concurrent = concurrent_runs(executions, deaths)
    return report
