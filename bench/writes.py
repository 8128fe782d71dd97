"""What the database wrote for a run, from PostgreSQL's own counters (per job).

- rows inserted / updated (HOT) / deleted per table: `pg_stat_user_tables` of the bench
  database (per database, so other databases on the shared server do not count);
- commits and statement time: `pg_stat_database` (`xact_commit`, `active_time`: time spent
  executing statements in this database, all backends; wall time, so it includes waits);
- WAL: records of this database's relations (and the commit records of their transactions),
  from `pg_walinspect` over the run's LSN range, grouped per relation, so index tuples written
  are the btree insert records per index. A temporary replication slot holds the run's WAL
  until it is read. The cluster-wide LSN difference is printed too (other databases included).

`pg_stat_statements` (statements per job) is not available: it needs
`shared_preload_libraries`, i.e. a restart of the shared server.

Counters are flushed by backends when they go idle or exit: take `after` once the workers
and the scheduler have stopped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

TABLES = ("jobs", "job_events", "outbox")
Counts = dict[str, tuple[int, int, int, int]]  # table → inserted, updated, HOT updated, deleted


@dataclass
class Snapshot:
    lsn: str
    tables: Counts = field(default_factory=dict)
    commits: int = 0
    active_ms: float = 0.0
    sessions: int = 0


def _stats(
    conn: psycopg.Connection[Any],
) -> tuple[dict[str, tuple[int, int, int, int]], int, float, int]:
    rows = conn.execute(
        "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables"
        " WHERE relname = ANY(%s)",
        [list(TABLES)],
    ).fetchall()
    commits, active, sessions = conn.execute(
        "SELECT xact_commit, active_time, sessions FROM pg_stat_database"
        " WHERE datname = current_database()"
    ).fetchone() or (0, 0.0, 0)
    tables = {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}
    return tables, int(commits), float(active or 0.0), int(sessions)


def process_cpu_s(pid: int) -> float:
    """utime + stime of a local process (PostgreSQL runs on this machine)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class WriteCounter:
    """Open before the run (holds a temporary slot so the run's WAL stays readable)."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn.replace("postgresql+psycopg://", "postgresql://"),
                                    autocommit=True)  # fmt: skip
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        self.conn.execute(
            "SELECT pg_create_physical_replication_slot('bench_' || pg_backend_pid(), true, true)"
        )
        self.before = self.snapshot()
        self._cpu_before = self._backend_cpu()

    def _backend_cpu(self) -> dict[int, float]:
        pids = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
        return {p[0]: process_cpu_s(p[0]) for p in pids}

    def backend_cpu_line(self, jobs: int) -> str:
        """CPU of this database's backends over the run (call before the processes stop:
        backends that ended during the run are missed, so this is a lower bound)."""
        now = self._backend_cpu()
        used = sum(cpu - self._cpu_before.get(pid, 0.0) for pid, cpu in now.items())
        return f"  PostgreSQL backend CPU: {used * 1000 / jobs:.3f} ms (backends alive at the end)"

    def snapshot(self) -> Snapshot:
        self.conn.execute("SELECT pg_stat_clear_snapshot()")
        lsn = self.conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        tables, commits, active, sessions = _stats(self.conn)
        return Snapshot(str(lsn[0]) if lsn else "0/0", tables, commits, active, sessions)

    def report(self, jobs: int, cpu_line: str = "") -> list[str]:
        after = self.snapshot()
        b, a = self.before, after
        lines = [f"per job, over {jobs} jobs (PostgreSQL counters of the bench database):"]
        lines.append(f"  {'table':<11} {'ins':>6} {'upd':>6} {'hot':>6} {'del':>6}")
        total_writes = 0.0
        for t in TABLES:
            x0 = b.tables.get(t, (0, 0, 0, 0))
            x1 = a.tables.get(t, (0, 0, 0, 0))
            ins, upd, hot, dele = ((x1[i] - x0[i]) / jobs for i in range(4))
            total_writes += ins + upd + dele
            lines.append(f"  {t:<11} {ins:>6.2f} {upd:>6.2f} {hot:>6.2f} {dele:>6.2f}")
        lines.append(f"  row writes (ins+upd+del): {total_writes:.2f}")
        if cpu_line:
            lines.append(cpu_line)
        lines.append(
            f"  commits: {(a.commits - b.commits) / jobs:.2f}   statement time: "
            f"{(a.active_ms - b.active_ms) / jobs:.3f} ms   connections opened: "
            f"{a.sessions - b.sessions} (each starts a backend process)"
        )
        cluster = self.conn.execute(
            "SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", [a.lsn, b.lsn]
        ).fetchone()
        lines.append(f"  WAL, whole cluster: {float(cluster[0]) / jobs:.0f} B" if cluster else "")
        lines.extend(self._wal(b.lsn, a.lsn, jobs))
        return lines

    def _wal(self, start: str, end: str, jobs: int) -> list[str]:
        """WAL of this database's relations and of their transactions' commit records."""
        rows = self.conn.execute(
            """
            WITH r AS MATERIALIZED (
                SELECT xid, resource_manager AS rm, record_type, record_length,
                       fpi_length,
                       substring(block_ref from 'rel \\d+/(\\d+)/\\d+')::oid AS db,
                       substring(block_ref from 'rel \\d+/\\d+/(\\d+)')::oid AS node
                FROM pg_get_wal_records_info(%(start)s::pg_lsn, %(end)s::pg_lsn)
            ), mine AS (
                SELECT * FROM r WHERE db = (
                    SELECT oid FROM pg_database WHERE datname = current_database())
            ), xids AS (SELECT DISTINCT xid FROM mine WHERE xid <> 0)
            SELECT coalesce(c.relname, m.rm) AS rel, m.rm, count(*), sum(m.record_length),
                   sum(m.fpi_length)
            FROM mine AS m LEFT JOIN pg_class AS c ON c.relfilenode = m.node
            GROUP BY 1, 2
            UNION ALL
            SELECT '(commits)', 'Transaction', count(*), sum(record_length), 0
            FROM r WHERE rm = 'Transaction' AND xid IN (SELECT xid FROM xids)
            ORDER BY 4 DESC
            """,
            {"start": start, "end": end},
        ).fetchall()
        total = sum(float(r[3] or 0) for r in rows)
        lines = [f"  WAL, this database: {total / jobs:.0f} B (records per job by relation:)"]
        for rel, rm, count, length, fpi in rows:
            if count / jobs >= 0.01:
                lines.append(
                    f"    {rel:<28} {rm:<12} {count / jobs:>6.2f} records "
                    f"{float(length or 0) / jobs:>7.0f} B "
                    f"(full pages {float(fpi or 0) / jobs:.0f} B)"
                )
        return lines

    def close(self) -> None:
        self.conn.close()  # drops the temporary slot
