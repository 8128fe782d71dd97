"""Exact, cheap completion accounting shared by every benchmarked system.

Every executed task calls :func:`mark_done` once.  It appends one fixed-size record
(``job id: int64``, ``time.monotonic(): float64`` = 16 bytes) to a file whose path is
handed to the worker processes in the ``BENCH_DONE_FILE`` environment variable.  The
file is opened with ``O_APPEND`` (once per process), so each record is a single
``write(2)`` that Linux performs atomically for regular files: records from different
processes and threads never interleave and none are lost.  The file lives on tmpfs
(``/dev/shm``) when available, so the per-task cost is one small syscall and the
workers never wait on the benchmark process (unlike a socket whose buffer can fill up).

The benchmark process polls the file size (the number of records) and, once it reaches
the job count, reads the records back.  A run is complete when every job id has been
seen at least once (a redelivered job can be recorded twice; duplicates are counted
but never make a run finish early).  The end time of the run is the latest of the
per-job first completion timestamps.  ``CLOCK_MONOTONIC`` is system-wide on Linux,
so worker timestamps are directly comparable with the submitter's start timestamp.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

DONE_FILE_ENV = "BENCH_DONE_FILE"
AMQP_URL_ENV = "BENCH_AMQP_URL"

RECORD = struct.Struct("<qd")

_fd: int | None = None
_fd_pid: int | None = None
_fd_lock = threading.Lock()


def _done_fd() -> int:
    global _fd, _fd_pid
    pid = os.getpid()
    if _fd is None or _fd_pid != pid:
        with _fd_lock:
            if _fd is None or _fd_pid != pid:
                _fd = os.open(os.environ[DONE_FILE_ENV], os.O_WRONLY | os.O_APPEND)
                _fd_pid = pid
    return _fd


def mark_done(job_id: int) -> None:
    """Record that ``job_id`` has been executed (one atomic 16-byte append)."""
    os.write(_done_fd(), RECORD.pack(job_id, time.monotonic()))


@dataclass(frozen=True)
class Completion:
    """Outcome of waiting for a batch of jobs."""

    last_done: float  # time.monotonic() of the last job's (first) completion
    records: int  # total records written, > jobs if something was redelivered


class CompletionLog:
    """Reader side of the completion file (lives in the benchmark process)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_bytes(b"")

    def count(self) -> int:
        return os.stat(self.path).st_size // RECORD.size

    def _first_done_per_job(self, jobs: int) -> dict[int, float]:
        data = self.path.read_bytes()
        data = data[: len(data) - len(data) % RECORD.size]
        first: dict[int, float] = {}
        for job_id, ts in RECORD.iter_unpack(data):
            if 0 <= job_id < jobs and (job_id not in first or ts < first[job_id]):
                first[job_id] = ts
        return first

    def wait_for(self, jobs: int, deadline: float, poll_s: float = 0.002) -> Completion:
        """Block until all job ids ``0..jobs-1`` are recorded; TimeoutError at ``deadline``."""
        while True:
            n = self.count()
            if n >= jobs:
                first = self._first_done_per_job(jobs)
                if len(first) == jobs:
                    return Completion(last_done=max(first.values()), records=n)
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {n} completion records (of {jobs} jobs) before timeout")
            time.sleep(poll_s)
