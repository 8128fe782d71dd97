"""Helpers shared by CLI commands: one settings object, one engine per command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings, get_settings
from shared.db.engine import make_engine, make_session_factory

console = Console()


def settings_or_exit() -> Settings:
    settings = get_settings()
    if not settings.database_url:
        console.print("[red]CONVEYOR_DATABASE_URL is not set[/red] (see .env.example)")
        raise typer.Exit(2)
    return settings


@contextmanager
def sessions() -> Iterator[sessionmaker[Session]]:
    engine = make_engine(
        settings_or_exit().require_database_url(), pool_size=2, application_name="conveyor-cli"
    )
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()
