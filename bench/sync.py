"""Device sync: merge a 10,000-change batch against a user with 100,000 rows, and build the
delta for 10,000 changed rows; compare with a naive row-at-a-time upsert loop, same run.

Setup (not timed): a fresh database; one user with N contacts, each with its five
registers (as if synced before), bulk-loaded with COPY.

1. **batched** (the `device.sync` code path): parse and validate the batch, load the touched
   rows (`FOR UPDATE`) and their registers with one query each, merge in memory, write
   with one upsert for the rows and one for the registers, commit.
2. **delta**: a second device syncs with a cursor taken before step 1: the whole job
   (`service.sync_device`: lock, merge of an empty batch, delta of the 10,000 changed rows,
   JSON serialisation and upload of the delta object to an in-memory store), commit — in one
   page (page size above the row count), and as the wire protocol pages it by default
   (`CONVEYOR_SYNC_DELTA_PAGE_ENTITIES`, 5,000 rows: two sync jobs, timed together).
3. **naive**: the same merge rule on `--naive-changes` *other* rows (default 1,000: the loop
   runs at tens of changes/s on a busy machine, so a 10,000-row loop would take minutes), one
   entity at a time (load row, load registers, merge, upsert row, upsert registers), one
   transaction; its rate is compared with the batched rate.

Each step runs in its own freshly spawned process (what a worker process would be), which
reports its time and peak RSS (`ru_maxrss`). Prints figures; asserts nothing. Targets (issue
#10): ≥ 5,000 changes/s merged, delta for 10,000 rows < 1 s, peak RSS < 200 MB.

    .venv/bin/python -m bench.sync --rows 100000 --changes 10000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.orm import Session

from shared.db.engine import libpq_dsn, make_engine, make_session_factory, session_scope
from shared.db.models import SyncDevice, User
from shared.db.repos import sync as sync_repo
from shared.jobs.payloads.sync import DeviceSyncPayload
from shared.storage.memory import MemoryStore
from tests.support.services import create_database, drop_database
from workers.sync import rows as rows_mod
from workers.sync.apply_batch import MergeContext, merge_batch
from workers.sync.batch import ClockRule, parse_batch
from workers.sync.cursor import Cursor, CursorKeys
from workers.sync.entities import ParsedChange
from workers.sync.merge import Change, apply
from workers.sync.service import SyncPolicy, sync_device

FIELDS = ("name", "email", "phone", "company", "notes")
BENCH_KEYS = CursorKeys((("bench", b"k" * 32),))
DEFAULT_PAGE_ROWS = SyncPolicy("sync", BENCH_KEYS).page_rows
TYPES = ["contact", "task", "decision", "setting"]


def seed(url: str, rows: int) -> dict[str, Any]:
    """A user, a writer and a reader device, and `rows` contacts with their registers."""
    user, writer, reader, old = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    pager = uuid.uuid4()  # a second reader, for the paged delta
    engine = make_engine(url, pool_size=1)
    with session_scope(make_session_factory(engine)) as session:
        session.add(
            User(id=user, email=f"{user.hex}@x.io", display_name="B", locale="en", timezone="UTC")
        )
        session.flush()
        for device in (writer, reader, old, pager):
            session.add(
                SyncDevice(id=device, user_id=user, name="d", platform="bench", secret_hash=b"x")
            )
        sync_repo.ensure_settings(session, user, interval_s=300)
    engine.dispose()
    ids = [uuid.uuid4() for _ in range(rows)]
    stamp = datetime.now(UTC) - timedelta(hours=1)
    ms = rows_mod.datetime_to_ms(stamp)
    with psycopg.connect(libpq_dsn(url)) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY contacts (id, owner_id, name, email, created_at, updated_at) FROM STDIN"
        ) as copy:
            for n, ident in enumerate(ids):
                copy.write_row((ident, user, f"Contact {n}", f"c{n}@example.com", stamp, stamp))
        applied_us = (stamp - rows_mod.EPOCH) // timedelta(microseconds=1)
        with cur.copy(
            "COPY sync_registers (user_id, entity_type, entity_id, registers) FROM STDIN"
        ) as copy:
            for n, ident in enumerate(ids):
                values = (f"Contact {n}", f"c{n}@example.com", None, None, None)
                registers = {
                    field: [ms, 0, str(old), value, applied_us]
                    for field, value in zip(FIELDS, values, strict=True)
                }
                copy.write_row((user, "contact", str(ident), json.dumps(registers)))
        cur.execute("ANALYZE")
    return {"user": user, "writer": writer, "reader": reader, "pager": pager, "ids": ids}


def changes_for(ids: list[uuid.UUID], tag: str) -> list[dict[str, Any]]:
    hlc = f"{int(time.time() * 1000)}-0"
    return [
        {
            "type": "contact",
            "id": str(i),
            "hlc": hlc,
            "fields": {"name": f"{tag} {n}", "notes": f"edited by {tag}"},
        }
        for n, i in enumerate(ids)
    ]


class SqlTimer:
    """Wall time spent in SQL (statement sent until its rows are in the client), to split a
    step's time into SQL (PostgreSQL, the network, waiting for a CPU) and the rest (Python).
    `load_registers` runs on the raw driver cursor, so it is timed whole (its JSON decoding of
    the values included)."""

    def __init__(self, engine: Any) -> None:
        self.seconds = 0.0
        self._started = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        original = sync_repo.load_registers

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        sync_repo.load_registers = timed

    def _before(self, *args: Any) -> None:
        self._started = time.perf_counter()

    def _after(self, *args: Any) -> None:
        self.seconds += time.perf_counter() - self._started


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _parsed(session: Session, writer: uuid.UUID, raw: list[dict[str, Any]]) -> list[ParsedChange]:
    now_ms = rows_mod.datetime_to_ms(sync_repo.transaction_time(session))
    changes, rejected = parse_batch(
        raw, node=str(writer), enabled=TYPES, clock=ClockRule(now_ms, 300_000)
    )
    assert not rejected, rejected[:3]
    return changes


def run_batched(
    url: str, user: uuid.UUID, writer: uuid.UUID, raw: list[dict[str, Any]], out: Any
) -> None:
    engine = make_engine(url, pool_size=1)
    sql = SqlTimer(engine)
    started, cpu = time.perf_counter(), _cpu_s()
    with session_scope(make_session_factory(engine)) as session:
        now = sync_repo.transaction_time(session)
        changes = _parsed(session, writer, raw)
        outcome = merge_batch(session, MergeContext(user, writer, now, now), changes)
        sync_repo.add_conflicts(session, outcome.conflicts)
    out.put(
        {
            "seconds": time.perf_counter() - started,
            "peak_mb": _peak_mb(),
            "applied": outcome.applied,
            "cpu_s": _cpu_s() - cpu,
            "sql_s": sql.seconds,
        }
    )


def run_naive(
    url: str, user: uuid.UUID, writer: uuid.UUID, raw: list[dict[str, Any]], out: Any
) -> None:
    engine = make_engine(url, pool_size=1)
    started, cpu = time.perf_counter(), _cpu_s()
    with session_scope(make_session_factory(engine)) as session:
        now = sync_repo.transaction_time(session)
        for change in _parsed(session, writer, raw):
            ident = change.entity_id
            row = sync_repo.load_rows(session, "contact", user, [ident], for_update=True)[ident]
            before = rows_mod.states_from_registers(
                sync_repo.load_registers(session, user, "contact", [ident])
            ).get(ident, {})
            state, _ = apply(
                before, Change(change.hlc, change.fields), applied_at=now, seen_until=now
            )
            owner = ("owner_id", user)
            product = rows_mod.product_row("contact", ident, owner, state, row)
            sync_repo.upsert_rows(session, "contact", [product])
            sync_repo.upsert_registers(
                session, [rows_mod.register_row(user, "contact", ident, state)]
            )
    out.put(
        {"seconds": time.perf_counter() - started, "peak_mb": _peak_mb(), "cpu_s": _cpu_s() - cpu}
    )


def run_delta(
    url: str, user: uuid.UUID, reader: uuid.UUID, cursor: str, page_rows: int, out: Any
) -> None:
    """One device's sync from `cursor`, following continuation cursors to the last page."""
    engine = make_engine(url, pool_size=1)
    sessions = make_session_factory(engine)
    sql = SqlTimer(engine)
    store = MemoryStore()
    policy = SyncPolicy("sync", BENCH_KEYS, page_rows=page_rows)
    store.ensure_bucket(policy.bucket)
    entities = size = pages = 0
    seconds = cpu_s = job_sql = 0.0
    more: str | None = cursor
    while more is not None:
        payload = DeviceSyncPayload(device_id=reader, batch_id=uuid.uuid4(), cursor=more)
        with session_scope(sessions) as session:
            sync_repo.stage_batch(session, reader, payload.batch_id, [])  # what the ingress does
        started, cpu, sql_before = time.perf_counter(), _cpu_s(), sql.seconds
        with session_scope(sessions) as session:
            result = sync_device(session, lambda: store, policy, user_id=str(user), payload=payload)
        seconds, cpu_s = seconds + time.perf_counter() - started, cpu_s + _cpu_s() - cpu
        job_sql += sql.seconds - sql_before  # not the staging, which the ingress does
        entities += result["entity_count"]
        size += (result["delta_object"] or {}).get("bytes", 0)
        pages += 1
        more = result["cursor"] if result["more"] else None
    out.put(
        {
            "seconds": seconds,
            "peak_mb": _peak_mb(),
            "entities": entities,
            "bytes": size,
            "cpu_s": cpu_s,
            "pages": pages,
            "sql_s": job_sql,
        }
    )


def in_child(target: Any, *args: Any) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    process = ctx.Process(target=target, args=(*args, out))
    process.start()
    result: dict[str, Any] = out.get(timeout=600)
    process.join(60)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--naive-changes", type=int, default=1_000)
    args = parser.parse_args()
    url = create_database("conveyor_bench_sync")
    try:
        t0 = time.perf_counter()
        data = seed(url, args.rows)
        print(
            f"seeded {args.rows} contacts with 5 registers each in {time.perf_counter() - t0:.1f} s"
        )
        picked = random.Random(7).sample(data["ids"], args.changes + args.naive_changes)
        cursor = Cursor(str(data["user"]), datetime.now(UTC)).encode(BENCH_KEYS)
        batched = in_child(
            run_batched,
            url,
            data["user"],
            data["writer"],
            changes_for(picked[: args.changes], "batched"),
        )
        whole = args.changes + 1
        delta = in_child(run_delta, url, data["user"], data["reader"], cursor, whole)
        paged = in_child(run_delta, url, data["user"], data["pager"], cursor, DEFAULT_PAGE_ROWS)
        naive = in_child(
            run_naive,
            url,
            data["user"],
            data["writer"],
            changes_for(picked[args.changes :], "naive"),
        )
        report(args, batched, delta, paged, naive)
    finally:
        drop_database(url)


def report(
    args: argparse.Namespace,
    batched: dict[str, Any],
    delta: dict[str, Any],
    paged: dict[str, Any],
    naive: dict[str, Any],
) -> None:
    rate_b = args.changes / batched["seconds"]
    rate_n = args.naive_changes / naive["seconds"]
    print(
        f"user rows: {args.rows}, batch: {args.changes} changes (2 fields each); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print("(wall time; 'cpu' is the worker process's own CPU, the rest is PostgreSQL and waiting)")
    print(
        f"batched merge : {batched['seconds']:.2f} s = {rate_b:,.0f} changes/s, "
        f"cpu {batched['cpu_s']:.2f} s, sql {batched['sql_s']:.2f} s, "
        f"peak RSS {batched['peak_mb']:.0f} MB "
        "(target >= 5,000/s, < 200 MB)"
    )
    print(
        f"naive loop    : {args.naive_changes} changes in {naive['seconds']:.2f} s = "
        f"{rate_n:,.0f} changes/s, "
        f"cpu {naive['cpu_s']:.2f} s, peak RSS {naive['peak_mb']:.0f} MB"
    )
    print(f"batched / naive: {rate_b / rate_n:.1f}x")
    print(
        f"delta job     : {delta['entities']} changed rows, {delta['bytes'] / 1e6:.1f} MB "
        f"JSON in {delta['seconds']:.2f} s, cpu {delta['cpu_s']:.2f} s, "
        f"sql {delta['sql_s']:.2f} s, "
        f"peak RSS {delta['peak_mb']:.0f} MB "
        "(target < 1 s, < 200 MB)"
    )
    print(
        f"paged delta   : {paged['entities']} rows in {paged['pages']} pages of "
        f"{DEFAULT_PAGE_ROWS} in {paged['seconds']:.2f} s, cpu {paged['cpu_s']:.2f} s, "
        f"peak RSS {paged['peak_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
