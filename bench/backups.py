"""Backups: Conveyor's full / incremental backup and restore vs restic, in the same run.

A fresh database gets one user with N messages (plus channels, contacts, settings, ... from
`generate_demo_data`) and a fresh SeaweedFS. Each Conveyor step runs the real service code
(`create_backup`, `restore_backup`) in its own child process against that PostgreSQL and S3,
so its peak RSS (wait4's ru_maxrss) is the step's alone; its timing starts after it loaded
the ADBC driver and opened a PostgreSQL and an S3 connection, as a running worker has:

1. full backup of the user;
2. 1 % of the user's messages edited, then an incremental backup;
3. the user's rows wiped, then a restore of the incremental's point (full + incremental:
   verify everything, stage, upsert).

restic (Debian package `restic`: `apt-get install -y restic`) backs up the same rows as a
dump file (`COPY … TO STDOUT` of each table, i.e. what pg_dump writes for them) into a local
repository: first run, second run after the same 1 % edit, and `restore latest`. Its repo is
on local disk while Conveyor writes to S3 on the same machine. Prints figures; asserts
nothing. Targets (issue #8): full >= 1.3x restic, incremental time and size <= 5 % of the full,
restore >= 1.0x restic restore, peak RSS < 300 MB.

    .venv/bin/python -m bench.backups --messages 1000000
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import text

from shared.db.demo_data import generate_demo_data
from shared.db.engine import libpq_dsn, make_engine
from shared.embedded import start_seaweedfs
from tests.support.backups import wipe
from tests.support.services import create_database, drop_database
from workers.backups.tables import TABLES

BUCKET = "bench-backups"


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float
    rows: int
    plain_bytes: int  # what was read (rows as Arrow IPC / the dump file)
    stored_bytes: int  # what was written
    peak_rss_mb: float | None

    def line(self) -> str:
        return (
            f"| {self.name} | {self.seconds:.2f} | {self.plain_bytes / 1e6 / self.seconds:.1f} | "
            f"{self.rows / self.seconds:,.0f} | {self.plain_bytes / 1e6:.1f} | "
            f"{self.stored_bytes / 1e6:.1f} | {self.peak_rss_mb or 0:.0f} |"
        )


def run_child(args: list[str]) -> tuple[dict[str, Any], float]:
    """Run `python -m bench.backups child ...`; its JSON answer and peak RSS in MB."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.backups", "child", *args], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"child {args[0]} failed ({process.returncode})")
    return json.loads(out.splitlines()[-1]), usage.ru_maxrss / 1024  # after any log lines


def child(op: str, db: str, s3: str, keys: str, target: str, *, level: int) -> None:
    """One Conveyor step in this process: the service code with a no-op checkpoint."""
    from shared.crypto import KeyRing
    from shared.db.engine import make_session_factory, session_scope
    from shared.storage.s3 import S3Store
    from workers.backups.requests import request_backup
    from workers.backups.restore import restore_backup
    from workers.backups.service import BackupDeps, create_backup

    class Ctx:
        def __init__(self, user_id: str) -> None:
            self.sessions, self.user_id = sessions, user_id

        def checkpoint(self, progress: float, message: str | None = None) -> None:
            pass

    endpoint, access, secret = s3.split(",")
    sessions = make_session_factory(make_engine(db, pool_size=2))
    store = S3Store.connect(endpoint, access, secret)
    deps = BackupDeps(store, BUCKET, KeyRing.parse(keys), libpq_dsn(db), zstd_level=level)
    # Warm up what a running worker already has: the ADBC driver loaded, a PostgreSQL and
    # an S3 connection open. Per-job connections (ADBC, the snapshot session) stay in the timing.
    from shared.db.repos.backup_data import connect

    with connect(libpq_dsn(db)):
        store.ensure_bucket(BUCKET)
    with session_scope(sessions) as session:
        session.execute(text("SELECT 1"))
    started = time.perf_counter()
    with session_scope(sessions) as session:
        if op in ("full", "incremental"):
            backup = request_backup(
                session, uuid.UUID(target), type=op, data_types=None, api_key_id=None
            )
            session.commit()
            result = create_backup(Ctx(target), session, deps, backup_id=backup.id)  # type: ignore[arg-type]
        else:
            user = session.execute(
                text("SELECT user_id FROM backups WHERE id = :i"), {"i": target}
            ).scalar_one()
            result = restore_backup(
                Ctx(str(user)),  # type: ignore[arg-type]
                session,
                deps,
                backup_id=uuid.UUID(target),
                mode="replace",
                dry_run=False,
            )
    print(json.dumps({"seconds": time.perf_counter() - started, "result": result}))


def dump(db: str, user: uuid.UUID, path: Path) -> int:
    """The user's rows as COPY text, table after table (what pg_dump would write)."""
    with psycopg.connect(libpq_dsn(db)) as conn, path.open("wb") as out:
        for spec in TABLES:
            query = f"COPY (SELECT * FROM {spec.name} WHERE {spec.owner} = '{user}') TO STDOUT"
            out.write(f"-- {spec.name}\n".encode())
            with conn.cursor().copy(query) as copy:
                for data in copy:
                    out.write(bytes(data))
    return path.stat().st_size


def restic(repo: Path, *args: str) -> tuple[float, float, str]:
    env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(repo)}
    started = time.perf_counter()
    process = subprocess.Popen(
        ["restic", "--no-cache", "-q", *args], env=env, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"restic {args[0]} failed")
    return time.perf_counter() - started, usage.ru_maxrss / 1024, out


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def edit_one_percent(db: str, user: uuid.UUID, messages: int) -> None:
    engine = make_engine(db, pool_size=1)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE messages SET body = body || ' (edited)', edited_at = now() "
                "WHERE id IN (SELECT id FROM messages WHERE author_id = :u "
                "ORDER BY md5(id::text) LIMIT :n)"
            ),
            {"u": user, "n": max(1, messages // 100)},
        )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--zstd-level", type=int, default=3)
    if sys.argv[1:2] == ["child"]:
        child(*sys.argv[2:7], level=int(sys.argv[7]))
        return
    args = parser.parse_args()
    if shutil.which("restic") is None:
        raise SystemExit("restic is missing: apt-get install -y restic")
    work = Path(tempfile.mkdtemp(prefix="bench-backups-"))
    s3 = start_seaweedfs(work / "s3")
    db = create_database("conveyor_bench")
    try:
        run(args, work, s3, db)
    finally:
        s3.stop()
        drop_database(db)
        shutil.rmtree(work, ignore_errors=True)


def conveyor(
    name: str, op: str, common: list[str], target: str, level: int, db: str
) -> tuple[Step, dict[str, Any]]:
    answer, rss = run_child([op, *common, target, str(level)])
    result: dict[str, Any] = answer["result"]
    ids = result["chain"] if op == "restore" else [result["backup_id"]]
    engine = make_engine(db, pool_size=1)
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT plain_bytes, stored_bytes, row_counts FROM backups WHERE id = ANY(:i)"),
            {"i": [uuid.UUID(i) for i in ids]},
        ).all()
    engine.dispose()
    rows = sum(sum(counts.values()) for _, _, counts in found)
    step = Step(
        name, answer["seconds"], rows, sum(r[0] for r in found), sum(r[1] for r in found), rss
    )
    return step, result


def run(args: argparse.Namespace, work: Path, s3: Any, db: str) -> None:
    from shared.storage.s3 import S3Store

    engine = make_engine(db, pool_size=1)
    started = time.perf_counter()
    generate_demo_data(engine, users=1, messages=args.messages, seed=1)
    with engine.connect() as conn:
        user = uuid.UUID(str(conn.execute(text("SELECT id FROM users")).scalar_one()))
        rows = sum(
            conn.execute(text(f"SELECT count(*) FROM {t.name}")).scalar_one() for t in TABLES
        )
    print(
        f"data: {rows:,} rows ({args.messages:,} messages), {time.perf_counter() - started:.0f} s"
    )
    S3Store.connect(s3.endpoint, s3.access_key, s3.secret_key).ensure_bucket(BUCKET)
    keys = f"b1:{base64.b64encode(os.urandom(32)).decode()}"
    common = [db, f"{s3.endpoint},{s3.access_key},{s3.secret_key}", keys]
    level = args.zstd_level

    full, _ = conveyor("conveyor full backup", "full", common, str(user), level, db)
    dump_path, repo = work / "dump.sql", work / "restic-repo"
    dump_size = dump(db, user, dump_path)
    restic(repo, "init")
    seconds, rss, _ = restic(repo, "backup", str(dump_path))
    restic_full = Step("restic backup (dump file)", seconds, rows, dump_size, dir_size(repo), rss)

    edit_one_percent(db, user, args.messages)
    incremental, made = conveyor(
        "conveyor incremental (1% edited)", "incremental", common, str(user), level, db
    )
    before = dir_size(repo)
    dump_size = dump(db, user, dump_path)
    seconds, rss, _ = restic(repo, "backup", str(dump_path))
    restic_second = Step(
        "restic 2nd run (1% edited)", seconds, rows, dump_size, dir_size(repo) - before, rss
    )

    wipe(engine, user)
    restore, _ = conveyor(
        "conveyor restore (full + incr.)", "restore", common, made["backup_id"], level, db
    )
    seconds, rss, _ = restic(repo, "restore", "latest", "--target", str(work / "restored"))
    restic_restore = Step("restic restore latest", seconds, rows, dump_size, dump_size, rss)
    engine.dispose()
    report([full, restic_full, incremental, restic_second, restore, restic_restore])


def report(steps: list[Step]) -> None:
    full, restic_full, incremental, restic_second, restore, restic_restore = steps
    print("| step | s | MB/s (plain) | rows/s | plain MB | written MB | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for step in steps:
        print(step.line())
    peak = max(s.peak_rss_mb or 0 for s in (full, incremental, restore))
    figures = [
        ("full backup vs restic backup", f"{restic_full.seconds / full.seconds:.2f}x", ">= 1.3x"),
        ("incremental time / full", f"{incremental.seconds / full.seconds:.1%}", "<= 5%"),
        ("incremental size / full", f"{incremental.stored_bytes / full.stored_bytes:.1%}", "<= 5%"),
        (
            "restore vs restic restore",
            f"{restic_restore.seconds / restore.seconds:.2f}x",
            ">= 1.0x",
        ),
        ("restic 2nd run / 1st run", f"{restic_second.seconds / restic_full.seconds:.1%}", "-"),
        ("conveyor peak RSS (largest step)", f"{peak:.0f} MB", "< 300 MB"),
    ]
    for label, value, target in figures:
        print(f"{label:<34} {value:>10}   target {target}")


if __name__ == "__main__":
    main()
