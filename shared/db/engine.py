"""The one place that builds engines and sessions. Nothing connects at import time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

# Imported for its effect: every session bound to a tenant starts its transactions scoped.
from shared.db import tenancy as _tenancy  # noqa: F401


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` URLs (as other tools print them) and use psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def libpq_dsn(url: str) -> str:
    """SQLAlchemy URL → libpq URI, for code that talks to psycopg directly."""
    from sqlalchemy.engine import make_url

    return (
        make_url(normalize_url(url))
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int | None = None,
    application_name: str = "conveyor",
    pooled: bool = True,
) -> Engine:
    """Every engine Conveyor opens. `hide_parameters`: an error's text (and so a logged
    traceback) names the SQL but never the bound values, which may be tokens, user data or
    whatever a hostile client sent. `max_overflow` defaults to `pool_size`; overflow
    connections are closed when returned, so a busy server reconnects over and over.
    `pooled=False` for one-shot tools (migrations)."""
    overflow = pool_size if max_overflow is None else max_overflow
    pooling: dict[str, Any] = (
        {"pool_size": pool_size, "max_overflow": overflow, "pool_pre_ping": True}
        if pooled
        else {"poolclass": NullPool}
    )
    return create_engine(
        normalize_url(url),
        hide_parameters=True,
        connect_args={"application_name": application_name},
        **pooling,
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception."""
    session = factory()
    try:
        yield session
        if session.in_transaction():  # an empty commit still costs ~45 µs (a no-op job's)
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_unreachable(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) says the database cannot be reached right now:
    a lost or refused connection, a server shutting down or starting up. Errors of a
    reachable database (a bad query, a constraint, a statement timeout) are not."""
    import psycopg
    from sqlalchemy import exc as sa_exc

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, psycopg.InterfaceError):
            return True  # the connection is closed
        if isinstance(current, psycopg.OperationalError):
            state = current.sqlstate
            # No SQLSTATE: the client could not connect or lost the socket; 08: connection
            # exception; 57P0x: admin/crash shutdown, cannot connect now.
            if state is None or state.startswith(("08", "57P")):
                return True
        wrapped = current.orig if isinstance(current, sa_exc.DBAPIError) else None
        current = wrapped or current.__cause__ or current.__context__
    return False


def database_reachable(engine: Engine) -> bool:
    """One cheap round trip on a fresh connection (not a pooled one that may be stale)."""
    from sqlalchemy import text

    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
