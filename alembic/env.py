"""Alembic environment: URL from the caller (shared.db.migrations) or CONVEYOR_DATABASE_URL."""

from __future__ import annotations

from alembic import context

import shared.db.models  # noqa: F401  (registers every table on the metadata)
from shared.config import get_settings
from shared.db.base import Base
from shared.db.engine import make_engine, normalize_url

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("database_url") or get_settings().require_database_url()
    return normalize_url(str(url))


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url(), pooled=False, application_name="conveyor-migrate")
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
