"""Make one test database unreachable and bring it back, without touching the shared cluster.

`ALLOW_CONNECTIONS false` refuses every new connection to that database (superusers
included) and `pg_terminate_backend` drops the open ones: to the processes under test this
is exactly what a PostgreSQL restart looks like, while other tests' databases carry on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from tests.support.services import PG_ADMIN_URL


def _name(db_url: str) -> str:
    return db_url.rsplit("/", 1)[1].split("?")[0]


def take_down(db_url: str) -> None:
    name = _name(db_url)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


def bring_back(db_url: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{_name(db_url)}" WITH ALLOW_CONNECTIONS true')


@contextmanager
def database_down(db_url: str) -> Iterator[None]:
    take_down(db_url)
    try:
        yield
    finally:
        bring_back(db_url)
