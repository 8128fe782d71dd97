"""Security commands: `keys reencrypt` (after a key ring rotation) and `audit`."""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Column, Table

from workers.cli.common import console, sessions, settings_or_exit

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

keys_app = typer.Typer(no_args_is_help=True, help="Key ring maintenance.")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.command(name="audit")(audit)


@keys_app.command("reencrypt")
def reencrypt(
    batch: Annotated[int, typer.Option(min=1, help="rows per transaction")] = 200,
    skip_backups: Annotated[
        bool, typer.Option("--skip-backups", help="leave backup manifests (S3) alone")
    ] = False,
) -> None:
    """Re-encrypt every encrypted column (OAuth tokens, PKCE verifiers) and re-wrap backup
    data keys with the first key of CONVEYOR_MASTER_KEYS, in the current format.

    Put the new key first, keep the old ones after it, run this (again after an interruption:
    committed batches are not redone), then retire the old keys."""
    from shared.db.repos.encrypted import ENCRYPTED_COLUMNS
    from shared.reencrypt import pending, reencrypt_column, v1_left

    settings = settings_or_exit()
    ring = settings.key_ring()
    failed = 0
    with sessions() as factory:
        totals = pending(factory, ring)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
        ) as progress:
            for column in ENCRYPTED_COLUMNS:
                task = progress.add_task(column.name, total=totals[column.name])
                report = reencrypt_column(
                    factory, ring, column, batch=batch, advance=partial(progress.advance, task)
                )
                failed += len(report.failed)
                for pk in report.failed:
                    progress.console.print(f"[red]{column.name} row {pk} does not decrypt[/red]")
            if not skip_backups and settings.s3_endpoint:
                _rewrap_backups(factory, progress, batch)
        left = v1_left(factory)
    every = "every other" if failed else "every"
    console.print(f"done: {every} ciphertext is now under key {ring.current_kid!r}")
    _report_v1(left, accepted=ring.accept_v1)
    if failed:
        console.print(f"[red]{failed} value(s) could not be decrypted and were left as is[/red]")
        raise typer.Exit(1)


def _report_v1(left: dict[str, int], *, accepted: bool) -> None:
    """How many column values are still v1: CONVEYOR_CRYPTO_ACCEPT_V1=false is safe at 0."""
    total = sum(left.values())
    detail = ", ".join(f"{name} {count}" for name, count in left.items() if count)
    console.print(f"{total} v1 value(s) left" + (f" ({detail})" if detail else ""))
    if total and not accepted:
        console.print(
            "CONVEYOR_CRYPTO_ACCEPT_V1 is false, so they were not read: run again with it "
            "true to upgrade them, or leave them unreadable"
        )


def _rewrap_backups(factory: sessionmaker[Session], progress: Progress, batch: int) -> None:
    from shared.db.engine import session_scope
    from shared.db.repos import backups as backups_repo
    from shared.storage.buckets import Bucket, bucket_name
    from shared.storage.s3 import S3Store
    from workers.backups.rewrap import rewrap_backups

    settings = settings_or_exit()
    ring, store = settings.key_ring(), S3Store.from_settings(settings)
    bucket = bucket_name(settings.bucket_prefix, Bucket.BACKUPS)
    with session_scope(factory) as session:
        total = backups_repo.count_needing_rewrap(session, ring.current_kid)
    task = progress.add_task("backups (data keys)", total=total)
    while True:
        with session_scope(factory) as session:
            done = rewrap_backups(session, store, bucket, ring, limit=batch)
        progress.advance(task, done)
        if done < batch:
            break


def audit(
    action: Annotated[
        str | None, typer.Option(help="e.g. apikey (all apikey.*) or file.delete_requested")
    ] = None,
    actor_key: Annotated[uuid.UUID | None, typer.Option(help="the acting key's id")] = None,
    target: Annotated[str | None, typer.Option(help="e.g. file:<id>")] = None,
    user_id: Annotated[str | None, typer.Option()] = None,
    since: Annotated[datetime | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """Show the audit log, newest first (the same as GET /v1/audit)."""
    from shared.db.engine import session_scope
    from shared.db.repos import audit as audit_repo

    filters = audit_repo.AuditFilter(action, actor_key, target, user_id, since, None)
    table = Table(Column("at", no_wrap=True), "action", "target", "actor", "user", "details")
    with sessions() as factory, session_scope(factory) as session:
        events = audit_repo.list_events(session, filters, after=None, limit=limit)
        for e in events:
            actor = f"{e.actor}:{str(e.actor_key_id)[:8]}" if e.actor_key_id else e.actor
            details = " ".join(f"{k}={v}" for k, v in sorted(e.details.items()))
            table.add_row(
                e.at.isoformat(timespec="seconds"),
                e.action,
                e.target,
                actor,
                e.user_id or "-",
                details,
            )
    console.print(table)
    console.print(f"{len(events)} event(s)")
