"""`conveyor backups rewrap`: after a master key rotation, re-wrap backup data keys."""

from __future__ import annotations

from typing import Annotated

import typer

from shared.db.engine import session_scope
from shared.storage.buckets import Bucket, bucket_name
from shared.storage.s3 import S3Store
from workers.backups.rewrap import rewrap_backups
from workers.cli.common import console, sessions, settings_or_exit

backups_app = typer.Typer(no_args_is_help=True, help="Backup maintenance.")


def register(app: typer.Typer) -> None:
    app.add_typer(backups_app, name="backups")


@backups_app.command("rewrap")
def rewrap(
    batch: Annotated[int, typer.Option(min=1, help="backups per transaction")] = 100,
) -> None:
    """Re-wrap every backup's data key with the current (first) master key.

    Put the new key first in CONVEYOR_MASTER_KEYS, keep the old one after it, run this,
    then retire the old key. Only manifests change; data objects are not rewritten.
    """
    settings = settings_or_exit()
    ring, store = settings.key_ring(), S3Store.from_settings(settings)
    bucket = bucket_name(settings.bucket_prefix, Bucket.BACKUPS)
    total = 0
    with sessions() as factory:
        while True:
            with session_scope(factory) as session:
                done = rewrap_backups(session, store, bucket, ring, limit=batch)
            total += done
            if done < batch:
                break
    console.print(f"re-wrapped {total} backup(s) with key {ring.current_kid!r}")
