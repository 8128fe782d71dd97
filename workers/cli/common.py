"""Helpers shared by CLI commands: one settings object, one engine per command.

Heavy imports (SQLAlchemy, the catalogue, pika) happen inside the commands that need them,
so `conveyor --help` and argument errors answer at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from shared.config import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

console = Console()


def settings_or_exit() -> Settings:
    settings = get_settings()
    if not settings.database_url:
        console.print(
            "[red]CONVEYOR_DATABASE_URL is not set[/red]: start `conveyor dev` in this folder "
            "(the CLI then reads .conveyor/env) or set it (see .env.example)"
        )
        raise typer.Exit(2)
    return settings


@contextmanager
def sessions() -> Iterator[sessionmaker[Session]]:
    from sqlalchemy.exc import OperationalError

    from shared.db.engine import make_engine, make_session_factory

    engine = make_engine(
        settings_or_exit().require_database_url(), pool_size=2, application_name="conveyor-cli"
    )
    try:
        yield make_session_factory(engine)
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        console.print(f"[red]cannot reach the database[/red]: {reason}")
        console.print("is `conveyor dev` running, or is CONVEYOR_DATABASE_URL right?")
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
