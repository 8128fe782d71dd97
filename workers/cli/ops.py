"""Operator commands: dlq, apikey, tenant, demo-data."""

from __future__ import annotations

import time
from typing import Annotated

import typer
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


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Argument()],
    admin: Annotated[bool, typer.Option("--admin", help="may see every job of its tenant")] = False,
    tenant: Annotated[str, typer.Option(help="the tenant the key acts for")] = "default",
) -> None:
    """Create an API key; the token is printed once and only its hash is stored."""
    from shared.db.engine import session_scope
    from shared.db.repos import api_keys as api_keys_repo
    from shared.db.repos import tenants as tenants_repo

    with sessions() as factory, session_scope(factory) as session:
        if tenants_repo.get(session, tenant) is None:
            console.print(
                f"[red]no tenant {tenant!r}[/red]: create it with `conveyor tenant create`"
            )
            raise typer.Exit(1)
        issued = api_keys_repo.create(session, name, is_admin=admin, tenant_id=tenant)
    role = "admin" if admin else "user"
    console.print(f"API key [bold]{issued.name}[/bold] ({role}, tenant {tenant}):")
    typer.echo(issued.token)


@apikey_app.command("list")
def apikey_list() -> None:
    """List API keys (name, prefix, role, created, revoked); secrets are never shown."""
    from shared.db.engine import session_scope
    from shared.db.repos import api_keys as api_keys_repo

    table = Table(Column("prefix", no_wrap=True), "tenant", "name", "role", "created", "revoked")
    with sessions() as factory, session_scope(factory) as session:
        for key in api_keys_repo.list_keys(session):
            table.add_row(
                key.prefix,
                key.tenant_id,
                key.name,
                "admin" if key.is_admin else "user",
                key.created_at.isoformat(timespec="seconds"),
                key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "-",
            )
    console.print(table)


@apikey_app.command("revoke")
def apikey_revoke(
    key: Annotated[str, typer.Argument(help="the key's prefix (see `apikey list`) or name")],
) -> None:
    """Revoke a key at once: requests with it get 401 from now on."""
    from shared.db.engine import session_scope
    from shared.db.repos import api_keys as api_keys_repo

    with sessions() as factory, session_scope(factory) as session:
        revoked = [k.prefix for k in api_keys_repo.revoke(session, key)]
    if not revoked:
        console.print(f"[red]no live key with prefix or name {key!r}[/red]")
        raise typer.Exit(1)
    console.print(f"revoked {len(revoked)} key(s): {', '.join(revoked)}")


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
