"""The one place that scopes a database transaction to a tenant (row-level security).

A session bound to a tenant (`bind_tenant`, or a factory from `tenant_sessions`) starts every
transaction with, in one statement (`ENTER_TENANT_LIBPQ` is the same for a raw libpq/ADBC
transaction):

    SELECT set_config('role', 'conveyor_app', true),
           set_config('conveyor.tenant_id', <bound parameter>, true)

i.e. `SET LOCAL ROLE conveyor_app` (a role without BYPASSRLS: the connection's own role is a
superuser in dev/tests, or the owner with BYPASSRLS in production, and either skips RLS) and
`SET LOCAL conveyor.tenant_id`. Both end with the transaction, so a pooled connection never
carries a tenant into the next checkout. The policies (migration 0010_tenancy) compare
`tenant_id` with `current_setting('conveyor.tenant_id', true)`: unset or empty matches no
row, so a session that forgot its tenant sees nothing (fail closed), never everything.

Sessions without a tenant run as the owner: the spine's bookkeeping (claim/succeed, the
state writer, outbox relay, reaper, retention, scheduler chores) crosses tenants on purpose.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, event, text
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

APP_ROLE = "conveyor_app"
TENANT_SETTING = "conveyor.tenant_id"
DEFAULT_TENANT = "default"
TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"

_INFO_KEY = "conveyor.tenant_id"
_ENTER_SQL = "SELECT set_config('role', '{role}', true), set_config('{setting}', {tenant}, true)"
_ENTER = text(_ENTER_SQL.format(role=APP_ROLE, setting=TENANT_SETTING, tenant=":tenant"))
# The same statement for a raw libpq connection ($1 = the tenant), e.g. a restore's ADBC
# transaction (shared/db/repos/backup_data.py), which writes product rows outside a Session.
ENTER_TENANT_LIBPQ = _ENTER_SQL.format(role=APP_ROLE, setting=TENANT_SETTING, tenant="$1")
_LEAVE = text(f"SELECT set_config('role', 'none', true), set_config('{TENANT_SETTING}', '', true)")


class NoTenant(RuntimeError):
    """A tenant-scoped operation was asked of a session bound to no tenant."""


def bind_tenant(session: Session, tenant_id: str) -> None:
    """Act as `tenant_id` from now on: this transaction (if begun) and every later one."""
    session.info[_INFO_KEY] = tenant_id
    if session.in_transaction():
        session.connection().execute(_ENTER, {"tenant": tenant_id})


def act_as_owner(session: Session) -> None:
    """Drop the tenant for the rest of this transaction and the next ones: the spine's own
    statements (e.g. a job's success, written in the handler's transaction) run as owner."""
    session.info.pop(_INFO_KEY, None)
    if session.in_transaction():
        session.connection().execute(_LEAVE)


def tenant_of(session: Session) -> str | None:
    tenant = session.info.get(_INFO_KEY)
    return tenant if isinstance(tenant, str) else None


def acting_tenant(session: Session) -> str:
    """The tenant this session acts for; raises for owner sessions (fail loud, not open)."""
    tenant = tenant_of(session)
    if tenant is None:
        raise NoTenant("this session is bound to no tenant")
    return tenant


def current_tenant(session: Session) -> str:
    """The tenant for explicit query filters: the bound one, or the default tenant for the
    owner's sessions (CLI, tests). RLS enforces the bound one regardless."""
    return tenant_of(session) or DEFAULT_TENANT


@lru_cache(maxsize=1024)
def tenant_sessions(factory: sessionmaker[Session], tenant_id: str) -> sessionmaker[Session]:
    """A session factory like `factory` whose sessions act as `tenant_id`.

    One per (factory, tenant), cached: every sessionmaker makes a Session subclass of its own,
    and SQLAlchemy sets up event dispatch for each new class on its first transaction. Made
    per job, that was ~8 % of a worker's CPU on no-op jobs."""
    kw: dict[str, Any] = dict(factory.kw)
    kw["info"] = {**(kw.get("info") or {}), _INFO_KEY: tenant_id}
    return sessionmaker(**kw)


@event.listens_for(Session, "after_begin")
def _enter_tenant(
    session: Session, transaction: SessionTransaction, connection: Connection
) -> None:
    tenant = session.info.get(_INFO_KEY)
    if tenant is not None:
        connection.execute(_ENTER, {"tenant": tenant})
