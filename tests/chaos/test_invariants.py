"""The chaos suite's detectors, on hand-made trace records: fast, no services."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.chaos.invariants import JobRow, check, concurrent_runs
from workers.diag.trace import Execution, read_trace, traced

S = 1_000_000_000  # one second in ns


def run(job: str, attempt: int, start: float, end: float | None, pid: int = 1) -> Execution:
    return Execution(
        run=uuid.uuid4().hex,
        job_id=job,
        attempt=attempt,
        pid=pid,
        start_ns=int(start * S),
        end_ns=None if end is None else int(end * S),
        ok=None if end is None else True,
    )


def test_overlapping_runs_of_one_job_are_a_concurrent_double_run() -> None:
    first, second = run("a", 1, 0, 5, pid=1), run("a", 2, 3, 6, pid=2)
    assert concurrent_runs([first, second], {}) == [(first, second)]


def test_sequential_runs_and_other_jobs_do_not_count() -> None:
    runs = [run("a", 1, 0, 1), run("a", 2, 2, 3), run("b", 1, 0, 5), run("c", 1, 1, 4)]
    assert concurrent_runs(runs, {}) == []


def test_a_run_cut_by_a_process_death_ends_when_the_process_died() -> None:
    killed = run("a", 1, 0, None, pid=7)
    takeover = run("a", 2, 10, 11, pid=8)
    assert concurrent_runs([killed, takeover], {7: 9 * S}) == []
    assert concurrent_runs([killed, takeover], {7: int(10.5 * S)}) == [(killed, takeover)]
    # Death unknown: the run may still be going, so the later run overlaps it.
    assert concurrent_runs([killed, takeover], {}) == [(killed, takeover)]


def test_check_reports_lost_jobs_duplicate_successes_and_reruns() -> None:
    rows = {
        "ok": JobRow("ok", "succeeded", 1, 1),
        "stuck": JobRow("stuck", "queued", 0, 0),
        "twice": JobRow("twice", "succeeded", 2, 2),
        "spent": JobRow("spent", "dead", 3, 0),
    }
    trace = [
        run("ok", 1, 0, 1),
        run("twice", 1, 0, 1),
        run("twice", 2, 2, 3),
        run("spent", 1, 0, 1),
    ]
    report = check(["ok", "stuck", "twice", "spent", "never-stored"], rows, trace, {})
    assert report.missing == ["never-stored"]
    assert report.not_terminal == [("stuck", "queued")]
    assert report.lost == 2
    assert report.success_rows_wrong == [("twice", "succeeded", 2)]
    assert report.reruns_after_success == 1
    assert report.claims_without_run == 2  # "spent" used 3 attempts, ran once
    assert report.concurrent == []


def test_traced_writes_one_start_and_one_end_line_even_when_the_work_raises(
    tmp_path: Path,
) -> None:
    path = tmp_path / "trace.jsonl"
    job = uuid.uuid4()
    with traced(path, job, 1):
        pass
    with pytest.raises(RuntimeError), traced(path, job, 2):
        raise RuntimeError("injected")
    first, second = read_trace(path)
    assert (first.attempt, first.ok, second.attempt, second.ok) == (1, True, 2, False)
    assert first.job_id == str(job) and first.end_ns is not None
    assert len(path.read_text().splitlines()) == 4
    with traced(None, job, 3):  # tracing off: no file touched
        pass
    assert len(path.read_text().splitlines()) == 4
