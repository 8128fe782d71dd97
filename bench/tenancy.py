"""The cost of tenant scoping (RLS) per transaction, against the owner baseline, same run.

A fresh database on the local PostgreSQL, migrated, with N jobs spread over T tenants. Each
round runs the same request-shaped transaction (the jobs page of one user: an indexed
`SELECT ... WHERE tenant_id AND user_id ORDER BY created_at DESC LIMIT 50`, plus one small
INSERT into user_storage, rolled back) once as the owner (no RLS, the baseline) and once
through a tenant-bound session (role switch + set_config round trip, then RLS policies).
Rounds alternate so machine load hits both alike. Prints medians and the ratio; asserts
nothing.

    python -m bench.tenancy --jobs 50000 --tenants 20 --rounds 2000
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import make_engine, make_session_factory
from shared.db.tenancy import tenant_sessions
from tests.support.services import create_database, drop_database

PAGE = text(
    "SELECT id, state FROM jobs WHERE tenant_id = :t AND user_id = :u "
    "ORDER BY created_at DESC LIMIT 50"
)
TOUCH = text(
    "INSERT INTO user_storage (tenant_id, user_id, bytes_used, file_count) "
    "VALUES (:t, :u, 0, 0) ON CONFLICT DO NOTHING"
)


def seed(factory: sessionmaker[Session], jobs: int, tenants: int) -> None:
    with factory() as session, session.begin():
        for i in range(tenants):
            session.execute(text("INSERT INTO tenants (id, name) VALUES (:t, :t)"), {"t": f"t{i}"})
        session.execute(
            text(
                "INSERT INTO jobs (id, tenant_id, kind, pool, user_id, state, priority, payload,"
                " attempt, max_attempts, run_at, progress, cancel_requested, source) "
                "SELECT gen_random_uuid(), 't' || (g % :tenants), 'diag.noop', 'default', "
                "'user-' || (g % 500), 'succeeded', 5, '{}', 1, 3, now(), 1, false, 'api' "
                "FROM generate_series(1, :jobs) AS g"
            ),
            {"jobs": jobs, "tenants": tenants},
        )
    with factory() as session, session.begin():
        session.execute(text("ANALYZE jobs"))


def one(factory: sessionmaker[Session], tenant: str) -> float:
    user = f"user-{uuid.uuid4().int % 500}"
    started = time.perf_counter()
    with factory() as session, session.begin():
        session.execute(PAGE, {"t": tenant, "u": user}).all()
        session.execute(TOUCH, {"t": tenant, "u": user})
        session.rollback()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2_000)
    args = parser.parse_args()
    url = create_database("conveyor_bench")
    engine = make_engine(url, pool_size=1)
    try:
        owner = make_session_factory(engine)
        seed(owner, args.jobs, args.tenants)
        scoped = {f"t{i}": tenant_sessions(owner, f"t{i}") for i in range(args.tenants)}
        runs: dict[str, list[float]] = {"owner (baseline)": [], "tenant-scoped (RLS)": []}
        paths: list[tuple[str, Callable[[str], float]]] = [
            ("owner (baseline)", lambda t: one(owner, t)),
            ("tenant-scoped (RLS)", lambda t: one(scoped[t], t)),
        ]
        for i in range(args.rounds):
            tenant = f"t{i % args.tenants}"
            for name, run in paths if i % 2 else reversed(paths):
                runs[name].append(run(tenant))
        print(f"{args.jobs} jobs over {args.tenants} tenants, {args.rounds} rounds each")
        medians = {name: statistics.median(values) * 1000 for name, values in runs.items()}
        for name, median in medians.items():
            print(f"  {name:22s} median {median:.3f} ms per transaction")
        base, rls = medians["owner (baseline)"], medians["tenant-scoped (RLS)"]
        print(f"  ratio tenant/owner {rls / base:.2f} (+{rls - base:.3f} ms)")
    finally:
        engine.dispose()
        drop_database(url)


if __name__ == "__main__":
    main()
