"""An execution trace kept outside Conveyor's own bookkeeping (`CONVEYOR_DIAG_TRACE_PATH`).

Each `diag.noop` execution appends a `start` line before its work and an `end` line after it
(also when it raises), one `write()` on an `O_APPEND` descriptor each: lines under PIPE_BUF
from many processes never interleave, and a SIGKILLed execution leaves a `start` alone.
The chaos suite reads the file to count handler runs and find overlapping runs of one job.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Execution:
    """One handler run: `end_ns` is None when the process died before it finished."""

    run: str
    job_id: str
    attempt: int
    pid: int
    start_ns: int
    end_ns: int | None = None
    ok: bool | None = None


def _append(path: Path, record: dict[str, object]) -> None:
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@contextmanager
def traced(path: Path | None, job_id: uuid.UUID, attempt: int) -> Iterator[None]:
    """Record the block as one execution of (job_id, attempt); a no-op when `path` is None."""
    if path is None:
        yield
        return
    base = {"run": secrets.token_hex(8), "job_id": str(job_id), "attempt": attempt}
    _append(path, {**base, "event": "start", "pid": os.getpid(), "t_ns": time.time_ns()})
    ok = False
    try:
        yield
        ok = True
    finally:
        _append(path, {**base, "event": "end", "ok": ok, "t_ns": time.time_ns()})


def read_trace(path: Path) -> list[Execution]:
    """Pair the `start` and `end` lines of each run, in start order."""
    starts: dict[str, dict[str, object]] = {}
    ends: dict[str, dict[str, object]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        (starts if record["event"] == "start" else ends)[record["run"]] = record
    executions = []
    for run, start in starts.items():
        end = ends.get(run)
        executions.append(
            Execution(
                run=run,
                job_id=str(start["job_id"]),
                attempt=int(str(start["attempt"])),
                pid=int(str(start["pid"])),
                start_ns=int(str(start["t_ns"])),
                end_ns=None if end is None else int(str(end["t_ns"])),
                ok=None if end is None else bool(end["ok"]),
            )
        )
    return sorted(executions, key=lambda e: e.start_ns)
