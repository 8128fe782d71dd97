"""Operator commands: dlq, apikey, tenant, demo-data."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from shared.messaging.names import Pool
from workers.cli.common import console, sessions, settings_or_exit

dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and replay dead-letter queues.")
apikey_app = typer.Typer(no_args_is_help=True, help="Manage API keys.")
tenant_app = typer.Typer(no_args_is_help=True, help="Manage tenants (isolated customers).")


def register(app: typer.Typer) -> None:
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(apikey_app, name="apikey")
    app.add_typer(tenant_app, name="tenant")
    app.command(name="demo-data")(demo_data)


def _broker_url() -> str:
    url = settings_or_exit().broker_url
    if not url:
        # `conveyor dev` without a broker runs jobs in-process: dead jobs stay in the database.
        console.print(
            "[red]CONVEYOR_BROKER_URL is not set[/red]: without RabbitMQ there are no "
            "dead-letter queues; see dead jobs with `conveyor jobs --state dead`"
        )
        raise typer.Exit(2)
    return url


@dlq_app.command("list")
def dlq_list(
    pool: Annotated[list[Pool] | None, typer.Option(help="limit to pools")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """Show dead letters with their reasons (messages stay in the queue)."""
    from shared.messaging.dlq import list_dead_letters

    table = Table(
        Column("queue", no_wrap=True),
        Column("reason", no_wrap=True),
        Column("job", no_wrap=True),
        "detail / body",
    )
    letters = list_dead_letters(_broker_url(), pools=pool, limit=limit)
    for letter in letters:
        job_id = letter.job_id()
        shown = letter.detail if job_id else letter.body[:200].decode("utf-8", "replace")
        table.add_row(letter.queue, letter.reason, str(job_id or "-"), shown)
    console.print(table)
    console.print(f"{len(letters)} dead letter(s) shown")


@dlq_app.command("replay")
def dlq_replay(
    pool: Annotated[list[Pool] | None, typer.Option(help="limit to pools")] = None,
    reason: Annotated[str | None, typer.Option(help="only letters with this reason")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
) -> None:
    """Queue dead jobs again with a fresh attempt budget."""
    from shared.messaging.dlq import replay_dead_letters

    broker_url = _broker_url()
    with sessions() as factory:
        report = replay_dead_letters(broker_url, factory, pools=pool, reason=reason, limit=limit)
    console.print(f"replayed {report.replayed}, left {report.skipped} in place")


def _duration(text: str) -> timedelta:
    """ "90d", "12h", "1h30m", "3600" (seconds): pytimeparse's grammar."""
    from pytimeparse.timeparse import timeparse as parse_duration

    seconds = parse_duration(text) if not text.isdigit() else int(text)
    if seconds is None or seconds < 0:
        raise typer.BadParameter(f"{text!r} is not a duration like 90d, 12h or 3600")
    return timedelta(seconds=seconds)


def _when(at: datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at else "-"


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Argument()],
    scope: Annotated[
        list[str] | None,
        typer.Option(help="read | write (default) | admin | submit:<kind>, repeatable"),
    ] = None,
    expires_in: Annotated[
        str | None, typer.Option(help="e.g. 90d, 12h: refused with 401 api_key_expired after")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="same as --scope admin")] = False,
    tenant: Annotated[str, typer.Option(help="the tenant the key acts for")] = "default",
) -> None:
    """Create an API key; the token is printed once and only its hash is stored."""
    from shared.db.engine import session_scope
    from shared.db.repos import api_keys as api_keys_repo
    from shared.db.repos import audit as audit_repo
    from shared.db.repos import tenants as tenants_repo
    from shared.jobs.catalog import all_specs
    from shared.scopes import InvalidScope, describe, parse_scopes

    public_kinds = [spec.kind for spec in all_specs() if spec.public]
    try:
        is_admin, scopes = parse_scopes(
            [*(scope or []), *(["admin"] if admin else [])], public_kinds
        )
    except InvalidScope as exc:
        raise typer.BadParameter(str(exc), param_hint="--scope") from None
    expires_at = datetime.now(UTC) + _duration(expires_in) if expires_in else None
    with sessions() as factory, session_scope(factory) as session:
        if tenants_repo.get(session, tenant) is None:
            console.print(
                f"[red]no tenant {tenant!r}[/red]: create it with `conveyor tenant create`"
            )
            raise typer.Exit(1)
        issued = api_keys_repo.create(
            session, name, is_admin=is_admin, scopes=scopes, expires_at=expires_at, tenant_id=tenant
        )
        audit_repo.record(
            session,
            action="apikey.created",
            target=f"apikey:{issued.id}",
            actor="cli",
            tenant_id=tenant,
            name=name,
            prefix=issued.prefix,
            scopes=describe(is_admin, scopes),
            expires_at=_when(expires_at),
        )
    shown = describe(is_admin, scopes)
    console.print(
        f"API key [bold]{issued.name}[/bold] ({shown}, tenant {tenant}, "
        f"expires {_when(expires_at)}):"
    )
    typer.echo(issued.token)


@apikey_app.command("list")
def apikey_list() -> None:
    """List API keys (prefix, name, scopes, dates); secrets are never shown."""
    from shared.db.engine import session_scope
    from shared.db.repos import api_keys as api_keys_repo
    from shared.scopes import describe

    table = Table(
        Column("prefix", no_wrap=True),
        Column("tenant", no_wrap=True),
        Column("name", no_wrap=True),
        "scopes",
        "created",
        "expires",
        "rotated",
        "revoked",
    )
    with sessions() as factory, session_scope(factory) as session:
        for key in api_keys_repo.list_keys(session):
            table.add_row(
                key.prefix,
                key.tenant_id,
                key.name,
                describe(key.is_admin, key.scopes),
                _when(key.created_at),
                _when(key.expires_at),
                _when(key.rotated_at),
                _when(key.revoked_at),
            )
    console.print(table)


@apikey_app.command("revoke")
def apikey_revoke(
    key: Annotated[str, typer.Argument(help="the key's prefix (see `apikey list`) or name")],
    tenant: Annotated[
        str | None,
        typer.Option(help="the tenant whose key NAME is meant (default: default)"),
    ] = None,
) -> None:
    """Revoke a key at once: requests with it get 401 from now on. A name means every live
    key of that name in one tenant; a name live in several tenants needs --tenant."""
    from shared.db.engine import session_scope
    from shared.db.repos import api_keys as api_keys_repo
    from shared.db.repos import audit as audit_repo

    try:
        with sessions() as factory, session_scope(factory) as session:
            revoked = api_keys_repo.revoke(
                session, api_keys_repo.resolve(session, key, tenant_id=tenant)
            )
            for row in revoked:
                audit_repo.record(
                    session,
                    action="apikey.revoked",
                    target=f"apikey:{row.id}",
                    actor="cli",
                    tenant_id=row.tenant_id,
                    name=row.name,
                    prefix=row.prefix,
                )
            prefixes = [k.prefix for k in revoked]
    except api_keys_repo.AmbiguousKeyName as exc:
        console.print(f"[red]{escape(exc.message)}[/red]; nothing revoked.")
        console.print(f"run again with {' or '.join(f'--tenant {t}' for t in exc.tenants)}")
        raise typer.Exit(2) from None
    except api_keys_repo.KeyNotFound as exc:
        hint = f" (it exists in: {', '.join(exc.elsewhere)}; use --tenant)" if exc.elsewhere else ""
        console.print(f"[red]{escape(exc.message)}[/red]{escape(hint)}")
        raise typer.Exit(1) from None
    console.print(f"revoked {len(prefixes)} key(s): {', '.join(prefixes)}")


@apikey_app.command("rotate")
def apikey_rotate(
    prefix: Annotated[str, typer.Argument(help="the key's prefix (see `apikey list`)")],
    grace: Annotated[
        str, typer.Option(help="how long the old secret keeps working; 0 refuses it at once")
    ] = "24h",
) -> None:
    """Give a key a new secret (same key: its jobs and files stay its own). The new token is
    printed once; the old one keeps working for --grace (default 24h), then gets 401."""
    from shared.db.engine import session_scope
    from shared.db.repos import api_keys as api_keys_repo
    from shared.db.repos import audit as audit_repo

    period = _duration(grace)
    with sessions() as factory, session_scope(factory) as session:
        issued = api_keys_repo.rotate(session, prefix, grace=period)
        if issued is not None:
            audit_repo.record(
                session,
                action="apikey.rotated",
                target=f"apikey:{issued.id}",
                actor="cli",
                tenant_id=issued.tenant_id,
                name=issued.name,
                prefix=prefix,
                grace_s=int(period.total_seconds()),
            )
    if issued is None:
        console.print(f"[red]no live key with prefix {prefix!r}[/red]")
        raise typer.Exit(1)
    console.print(f"rotated [bold]{issued.name}[/bold]; the old secret works for {period} more:")
    typer.echo(issued.token)


@tenant_app.command("create")
def tenant_create(
    tenant_id: Annotated[str, typer.Argument(help="lower-case id: letters, digits, - and _")],
    name: Annotated[str | None, typer.Option(help="display name (default: the id)")] = None,
) -> None:
    """Create a tenant; its keys (`apikey create --tenant ID`) see only its data."""
    from shared.db.engine import session_scope
    from shared.db.repos import tenants as tenants_repo

    try:
        with sessions() as factory, session_scope(factory) as session:
            created = tenants_repo.create(session, tenant_id, name or tenant_id)
    except tenants_repo.InvalidTenant as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(2) from None
    console.print(f"tenant {tenant_id} {'created' if created else 'exists already'}")


@tenant_app.command("list")
def tenant_list() -> None:
    """List tenants with their number of live API keys."""
    from shared.db.engine import session_scope
    from shared.db.repos import api_keys as api_keys_repo
    from shared.db.repos import tenants as tenants_repo

    table = Table(
        Column("id", no_wrap=True), "name", Column("live keys", justify="right"), "created"
    )
    with sessions() as factory, session_scope(factory) as session:
        keys = api_keys_repo.list_keys(session)
        for tenant in tenants_repo.list_tenants(session):
            live = sum(1 for k in keys if k.tenant_id == tenant.id and k.revoked_at is None)
            table.add_row(
                tenant.id, tenant.name, str(live), tenant.created_at.isoformat(timespec="seconds")
            )
    console.print(table)


def demo_data(
    users: Annotated[int, typer.Option(min=1)] = 100,
    messages: Annotated[int, typer.Option(min=0)] = 10_000,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Fill the product tables with realistic data (bulk COPY)."""
    from shared.db.demo_data import generate_demo_data
    from shared.db.engine import make_engine

    engine = make_engine(settings_or_exit().require_database_url(), pool_size=1)
    started = time.perf_counter()
    try:
        summary = generate_demo_data(engine, users=users, messages=messages, seed=seed)
    finally:
        engine.dispose()
    table = Table("table", Column("rows", justify="right"), title=f"demo data run {summary.run}")
    for name, count in summary.counts().items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    console.print(f"done in {time.perf_counter() - started:.1f}s")
