"""`sync_registers` (one row per entity, migration 0013): the data migration both ways, and the
rule that a register only ever moves forward when two syncs write one entity."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, pool, select, text
from sqlalchemy.orm import Session

from shared.db.engine import make_session_factory, session_scope
from shared.db.migrations import alembic_config
from shared.db.models import SyncRegisters, User
from shared.db.repos import sync as sync_repo
from tests.support.services import create_database, drop_database
from workers.sync import rows as rows_mod
from workers.sync.hlc import Hlc
from workers.sync.merge import Version

pytestmark = pytest.mark.integration

FIELD_ROWS = "SELECT entity_id, field, hlc_ms, hlc_counter, node, value, applied_at FROM "
FIELD_ROWS += "sync_field_versions ORDER BY entity_id, field"


def test_field_rows_become_one_row_per_entity_and_back() -> None:
    """Every register survives the upgrade exactly (µs of applied_at, a JSON null, nested
    values, the tombstone) and the downgrade gives the same field rows back."""
    url = create_database("conveyor_test_registers")
    engine = create_engine(url, poolclass=pool.NullPool)
    user = uuid.uuid4()
    try:
        command.downgrade(alembic_config(url), "0012_tenant_grants_k6w")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (id, email, display_name, locale, timezone)"
                    " VALUES (:u, 'a@x.io', 'A', 'en', 'UTC')"
                ),
                {"u": user},
            )
            conn.execute(
                text(
                    "INSERT INTO sync_field_versions (user_id, entity_type, entity_id, field,"
                    " hlc_ms, hlc_counter, node, value, applied_at) VALUES"
                    " (:u, 'contact', 'c1', 'name', 1700000000123, 2, 'dev-a', '\"Ann\"',"
                    "  '2026-11-30 10:00:00.123456+00'),"
                    " (:u, 'contact', 'c1', 'phone', 1700000000000, 0, 'server', 'null',"
                    "  '2026-11-30 10:00:01+00'),"
                    " (:u, 'contact', 'c1', '_deleted', 1700000000999, 65535, 'dev-b', 'true',"
                    "  '2026-11-30 10:00:02.000001+00'),"
                    " (:u, 'setting', 'theme', 'value', 1, 0, 'dev-a', '{\"a\": [1, 2.5]}',"
                    "  '1999-12-31 23:59:59.999999+00')"
                ),
                {"u": user},
            )
            before = [tuple(r) for r in conn.execute(text(FIELD_ROWS))]
        command.upgrade(alembic_config(url), "head")
        with Session(engine) as session:
            loaded = sync_repo.load_registers(session, user, "contact", ["c1"])
            stored = session.execute(select(SyncRegisters.entity_id)).scalars().all()
        assert sorted(stored) == ["c1", "theme"]
        states = rows_mod.states_from_registers(loaded)
        assert states == {
            "c1": {
                "name": Version(
                    Hlc(1700000000123, 2, "dev-a"),
                    "Ann",
                    datetime(2026, 11, 30, 10, 0, 0, 123456, tzinfo=UTC),
                ),
                "phone": Version(
                    Hlc(1700000000000, 0, "server"),
                    None,
                    datetime(2026, 11, 30, 10, 0, 1, tzinfo=UTC),
                ),
                "_deleted": Version(
                    Hlc(1700000000999, 65535, "dev-b"),
                    True,
                    datetime(2026, 11, 30, 10, 0, 2, 1, tzinfo=UTC),
                ),
            }
        }
        command.downgrade(alembic_config(url), "0012_tenant_grants_k6w")
        with engine.connect() as conn:
            assert [tuple(r) for r in conn.execute(text(FIELD_ROWS))] == before
    finally:
        engine.dispose()
        drop_database(url)


@pytest.fixture
def user_id(db_engine: Engine) -> Iterator[uuid.UUID]:
    user = uuid.uuid4()
    with session_scope(make_session_factory(db_engine)) as session:
        session.add(
            User(id=user, email=f"{user.hex}@x.io", display_name="R", locale="en", timezone="UTC")
        )
    yield user


def _write(engine: Engine, user: uuid.UUID, registers: dict[str, Version]) -> None:
    with session_scope(make_session_factory(engine)) as session:
        row = rows_mod.register_row(user, "message", "m1", registers)
        sync_repo.upsert_registers(session, [row])


def _read(engine: Engine, user: uuid.UUID) -> dict[str, Version]:
    with session_scope(make_session_factory(engine)) as session:
        return rows_mod.states_from_registers(
            sync_repo.load_registers(session, user, "message", ["m1"])
        )["m1"]


def test_a_register_only_moves_forward_field_by_field(
    db_engine: Engine, user_id: uuid.UUID
) -> None:
    """Two writers of one entity's registers (a message's author merging, another member's
    sync folding in a server edit) each write the whole entity from what they read: the
    later write must not take back a register the earlier one moved forward. Broken on
    purpose once (`registers = excluded.registers`): the body went back to "v1"."""
    at = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    v1 = Version(Hlc(100, 0, "author"), "v1", at)
    v2 = Version(Hlc(200, 0, "author"), "v2", at)
    edited = Version(Hlc(150, 0, "server"), "2026-12-01T00:00:00+00:00", at)
    _write(db_engine, user_id, {"body": v1, "channel_id": v1})
    _write(db_engine, user_id, {"body": v2, "channel_id": v1})  # the author's merge
    _write(db_engine, user_id, {"body": v1, "channel_id": v1, "edited_at": edited})  # stale
    assert _read(db_engine, user_id) == {"body": v2, "channel_id": v1, "edited_at": edited}
    # Same milliseconds and counter: the writer's name decides, in byte order.
    tie = Version(Hlc(200, 0, "authos"), "tie", at)
    _write(db_engine, user_id, {"body": tie})
    assert _read(db_engine, user_id)["body"] == tie
    _write(db_engine, user_id, {"body": Version(Hlc(200, 0, "author"), "older", at)})
    assert _read(db_engine, user_id)["body"] == tie
