"""Analytics exports: the full `export.create` job per format vs PostgreSQL's own COPY floor.

Seeds a fresh database with SQL generate_series: one user with N message rows (default 1M),
one with N/10 (XLSX) and one with N/100 (PDF), all in March 2026. Then, in the same run:

1. Baseline: `psql -c "\\copy (<the export's own SQL>) to stdout csv" > /dev/null`, the rows
   PostgreSQL can hand out as CSV, at best. And DuckDB's `COPY ... TO` through its postgres
   extension, where the extension installs (it downloads; without network it is reported
   as unavailable).
2. Conveyor: for each format a fresh `conveyor worker --pool export --processes 1 --threads 1`
   runs one `message_analytics` export job (stream with ADBC, write, upload to SeaweedFS).
   Time: the job's `started_at` → `finished_at` from PostgreSQL (upload included, worker
   start-up excluded). Peak RSS: VmHWM of the worker's child processes.

Prints rows/s, ratio to COPY, peak RSS; asserts nothing. Targets (issue #9): Parquet >= 0.7x
COPY, CSV >= 0.3x, JSON lines >= 0.2x, XLSX >= 4,000 rows/s, PDF >= 1,000 rows/s, peak RSS
< 300 MB at 1M rows.

    python -m bench.exports --rows 1000000
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from shared.db.engine import libpq_dsn, session_scope
from shared.db.repos.exports import literal_sql
from shared.embedded import start_seaweedfs
from shared.jobs.payloads.exports import ExportRequest
from tests.support.exports import seed_messages
from tests.support.stack import Stack
from workers.exports.datasets import Scope
from workers.exports.ranges import resolve
from workers.exports.submit import submit_export
from workers.exports.templates import plan

MARCH = {"kind": "custom", "from": "2026-03-01", "to": "2026-03-31"}
TIMEOUT_S = 600


@dataclass(frozen=True)
class Result:
    system: str
    rows: int
    seconds: float
    peak_rss_mb: float | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


def export_sql(user: uuid.UUID) -> str:
    request = ExportRequest.model_validate(
        {"template": "message_analytics", "format": "csv", "range": MARCH}
    )
    window = resolve(request.range, "Europe/Oslo", datetime.now(UTC))
    return literal_sql(
        plan(request, Scope(user, window.start, window.end, "Europe/Oslo")).statement
    )


def copy_floor(stack: Stack, user: uuid.UUID, rows: int) -> Result:
    sql = export_sql(user).replace("\n", " ")
    started = time.perf_counter()
    subprocess.run(
        ["psql", libpq_dsn(stack.db_url), "-c", f"\\copy ({sql}) to stdout csv"],
        stdout=subprocess.DEVNULL,
        check=True,
        timeout=TIMEOUT_S,
    )
    return Result("psql \\copy csv", rows, time.perf_counter() - started)


def duckdb_copy(stack: Stack, user: uuid.UUID, rows: int) -> Result | str:
    import duckdb

    with duckdb.connect() as conn, tempfile.TemporaryDirectory() as tmp:
        try:
            conn.execute("INSTALL postgres")
            conn.execute("LOAD postgres")
        except duckdb.Error as exc:
            return f"DuckDB postgres extension unavailable: {str(exc).splitlines()[0][:90]}"
        conn.execute(f"ATTACH '{libpq_dsn(stack.db_url)}' AS pg (TYPE postgres, READ_ONLY)")
        started = time.perf_counter()
        query = export_sql(user).replace("'", "''")
        conn.execute(f"COPY (SELECT * FROM postgres_query('pg', '{query}')) TO '{tmp}/out.parquet'")
        return Result("DuckDB COPY → parquet", rows, time.perf_counter() - started)


def run_job(stack: Stack, user: uuid.UUID, fmt: str, rows: int) -> Result:
    worker = stack.start_worker("export", processes=1, threads=1)
    request = ExportRequest.model_validate(
        {"template": "message_analytics", "format": fmt, "range": MARCH}
    )
    with session_scope(stack.sessions) as session:
        export = submit_export(session, user_id=str(user), request=request, api_key_id=None)
        job_id = export.job_id
    assert job_id is not None
    peak = 0
    deadline = time.monotonic() + TIMEOUT_S
    while (job := stack.job(job_id)).state not in ("succeeded", "failed", "dead"):
        peak = max(peak, worker_peak_rss(worker.pid))
        if time.monotonic() > deadline:
            raise TimeoutError(f"{fmt} export did not finish")
        time.sleep(0.2)
    peak = max(peak, worker_peak_rss(worker.pid))
    stack.kill(worker)
    if job.state != "succeeded" or job.started_at is None or job.finished_at is None:
        raise RuntimeError(f"{fmt}: {job.state} {job.error_code} {job.error_message}")
    seconds = (job.finished_at - job.started_at).total_seconds()
    return Result(f"conveyor {fmt}", rows, seconds, peak / 1024)


def worker_peak_rss(pid: int) -> int:
    """Largest VmHWM (kB) among the worker's processes."""
    try:
        processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    peak = 0
    for process in processes:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="bench-exports-"))
    s3 = start_seaweedfs(logs / "s3")
    stack = Stack.create(logs, s3=s3)
    try:
        stack.start_scheduler()
        sizes = {"big": args.rows, "xlsx": max(args.rows // 10, 1), "pdf": max(args.rows // 100, 1)}
        seeded = time.perf_counter()
        users = {name: seed_messages(stack.engine, n) for name, n in sizes.items()}
        print(f"seeded {sum(sizes.values()):,} messages in {time.perf_counter() - seeded:.1f} s")
        floor = copy_floor(stack, users["big"], sizes["big"])
        results: list[Result | str] = [floor, duckdb_copy(stack, users["big"], sizes["big"])]
        for fmt, who in (
            ("csv", "big"),
            ("parquet", "big"),
            ("jsonl", "big"),
            ("xlsx", "xlsx"),
            ("pdf", "pdf"),
        ):
            results.append(run_job(stack, users[who], fmt, sizes[who]))
        report(results, floor)
    finally:
        stack.close()
        s3.stop()


def report(results: list[Result | str], floor: Result) -> None:
    print(
        "\n| system | rows | seconds | rows/s | ÷ COPY | peak RSS MB |\n|---|---|---|---|---|---|"
    )
    for r in results:
        if isinstance(r, str):
            print(f"| {r} | | | | | |")
            continue
        rss = f"{r.peak_rss_mb:.0f}" if r.peak_rss_mb is not None else ""
        print(
            f"| {r.system} | {r.rows:,} | {r.seconds:.2f} | {r.rows_per_s:,.0f} |"
            f" {r.rows_per_s / floor.rows_per_s:.2f} | {rss} |"
        )


if __name__ == "__main__":
    main()
