"""Demo data lands consistently and deterministically; the change-tracking contract holds.

Every demo run tags its users' emails with `+<run>`, so each test reads only its own rows and
the module fixture purges them afterwards: the shared test database stays clean.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, pool, text
from sqlalchemy.exc import IntegrityError

from shared.db.base import Base
from shared.db.demo_data import DemoDataSummary, generate_demo_data
from shared.db.migrations import alembic_config
from shared.db.models.product import PRODUCT_TABLES
from tests.support.services import create_database, drop_database

pytestmark = pytest.mark.integration

NOW = datetime(2024, 1, 1, 12, tzinfo=UTC)  # fixed and in the past: trigger stamps are later
SEED = 7
USERS, MESSAGES = 40, 3000

RUN_USERS = "SELECT id FROM users WHERE email LIKE '%+' || :run || '@%'"
RUN_CHANNELS = f"SELECT id FROM channels WHERE owner_id IN ({RUN_USERS})"
OWNED_BY_RUN = {  # table -> how to select that run's rows
    "users": f"users.id IN ({RUN_USERS})",
    "channels": f"channels.owner_id IN ({RUN_USERS})",
    "channel_members": f"channel_members.user_id IN ({RUN_USERS})",
    "messages": f"messages.channel_id IN ({RUN_CHANNELS})",
    "contacts": f"contacts.owner_id IN ({RUN_USERS})",
    "user_settings": f"user_settings.user_id IN ({RUN_USERS})",
    "tasks": f"tasks.user_id IN ({RUN_USERS})",
    "decisions": f"decisions.user_id IN ({RUN_USERS})",
}


def _generate(engine: Engine, *, seed: int = SEED, run: str | None = None) -> DemoDataSummary:
    return generate_demo_data(engine, users=USERS, messages=MESSAGES, seed=seed, run=run, now=NOW)


def _purge(engine: Engine, run: str) -> None:
    """Hard-delete one run; the remaining tables go with the users by ON DELETE CASCADE."""
    with engine.begin() as conn:
        for table in ("messages", "channels", "users"):
            conn.execute(text(f"DELETE FROM {table} WHERE {OWNED_BY_RUN[table]}"), {"run": run})


def _scalar(conn: Connection, sql: str, **params: Any) -> Any:
    return conn.execute(text(sql), params).scalar_one()


@pytest.fixture(scope="module")
def demo(db_engine: Engine) -> Iterator[DemoDataSummary]:
    summary = _generate(db_engine)
    yield summary
    _purge(db_engine, summary.run)


def test_counts_match_the_request_and_the_summary(db_engine: Engine, demo: DemoDataSummary) -> None:
    assert (demo.users, demo.messages) == (USERS, MESSAGES)
    with db_engine.connect() as conn:
        for table, owned in OWNED_BY_RUN.items():
            stored = _scalar(conn, f"SELECT count(*) FROM {table} WHERE {owned}", run=demo.run)
            assert stored == demo.counts()[table] > 0, table


def test_references_are_consistent(db_engine: Engine, demo: DemoDataSummary) -> None:
    violations = {
        "author not a member of the channel": """
            SELECT count(*) FROM messages WHERE {messages} AND NOT EXISTS (
                SELECT 1 FROM channel_members cm
                WHERE cm.channel_id = messages.channel_id AND cm.user_id = messages.author_id)""",
        "reply to another channel or to a later message": """
            SELECT count(*) FROM messages JOIN messages p ON p.id = messages.reply_to_id
            WHERE {messages}
            AND (p.channel_id <> messages.channel_id OR p.created_at > messages.created_at)""",
        "task made from a newer message or one outside the user's channels": """
            SELECT count(*) FROM tasks JOIN messages m ON m.id = tasks.source_message_id
            WHERE {tasks} AND (m.created_at > tasks.created_at OR NOT EXISTS (
                SELECT 1 FROM channel_members cm
                WHERE cm.channel_id = m.channel_id AND cm.user_id = tasks.user_id))""",
        "decision in a channel the user is not in": """
            SELECT count(*) FROM decisions WHERE {decisions} AND decisions.channel_id IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM channel_members cm
                WHERE cm.channel_id = decisions.channel_id AND cm.user_id = decisions.user_id)""",
        "user without a channel": """
            SELECT count(*) FROM users WHERE {users}
            AND NOT EXISTS (SELECT 1 FROM channel_members cm WHERE cm.user_id = users.id)""",
        "direct channel without exactly two members": """
            SELECT count(*) FROM channels WHERE {channels} AND channels.kind = 'direct'
            AND (SELECT count(*) FROM channel_members cm WHERE cm.channel_id = channels.id) <> 2""",
    }
    not_vacuous = {
        "replies": "SELECT count(*) FROM messages WHERE reply_to_id IS NOT NULL AND {messages}",
        "tasks from messages": "SELECT count(*) FROM tasks WHERE source_message_id IS NOT NULL "
        "AND {tasks}",
        "decisions in channels": "SELECT count(*) FROM decisions WHERE channel_id IS NOT NULL "
        "AND {decisions}",
    }
    with db_engine.connect() as conn:
        for problem, sql in violations.items():
            assert _scalar(conn, sql.format(**OWNED_BY_RUN), run=demo.run) == 0, problem
        for kind, sql in not_vacuous.items():
            assert _scalar(conn, sql.format(**OWNED_BY_RUN), run=demo.run) > 0, kind
        foreign_keys = _scalar(
            conn,
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
            "AND conrelid::regclass::text = ANY(:tables)",
            tables=list(PRODUCT_TABLES),
        )
    assert foreign_keys == 12  # the database itself enforces every reference above


def test_timestamps_fall_in_the_window_and_tombstones_are_visible_changes(
    db_engine: Engine, demo: DemoDataSummary
) -> None:
    with db_engine.connect() as conn:
        for table, owned in OWNED_BY_RUN.items():
            bad = _scalar(
                conn,
                f"SELECT count(*) FROM {table} WHERE {owned} AND NOT ("
                "created_at >= :start AND created_at <= updated_at AND updated_at <= :now "
                "AND (deleted_at IS NULL OR deleted_at <= updated_at))",
                run=demo.run,
                start=NOW - timedelta(days=90),
                now=NOW,
            )
            assert bad == 0, table
        for table in ("messages", "contacts", "tasks"):
            tombstones = f"SELECT count(*) FROM {table} WHERE {OWNED_BY_RUN[table]}"
            assert _scalar(conn, tombstones + " AND deleted_at IS NOT NULL", run=demo.run) > 0
        edited = "SELECT count(*) FROM messages WHERE edited_at IS NOT NULL AND "
        assert _scalar(conn, edited + OWNED_BY_RUN["messages"], run=demo.run) > 0


def _content(conn: Connection, run: str) -> dict[str, list[Any]]:
    """What a run contains, without ids and run token."""
    queries = {
        "users": "SELECT replace(email, :run, ''), display_name, locale, timezone, "
        "created_at, updated_at, deleted_at FROM users WHERE {users} ORDER BY 1",
        "messages": "SELECT u.display_name, body, reply_to_id IS NULL, edited_at, "
        "messages.created_at, messages.updated_at, messages.deleted_at FROM messages "
        "JOIN users u ON u.id = author_id WHERE {messages} ORDER BY messages.created_at, body",
        "contacts": "SELECT name, email, phone, company, notes, created_at FROM contacts "
        "WHERE {contacts} ORDER BY created_at, name",
        "user_settings": "SELECT replace(u.email, :run, ''), key, value::text "
        "FROM user_settings JOIN users u ON u.id = user_id WHERE {user_settings} ORDER BY 1, 2",
    }
    return {
        name: [tuple(row) for row in conn.execute(text(sql.format(**OWNED_BY_RUN)), {"run": run})]
        for name, sql in queries.items()
    }


def _ids(conn: Connection, run: str) -> list[uuid.UUID]:
    sql = f"SELECT id FROM messages WHERE {OWNED_BY_RUN['messages']} ORDER BY created_at, id"
    return list(conn.execute(text(sql), {"run": run}).scalars())


def test_same_seed_gives_same_content_and_runs_never_collide(
    db_engine: Engine, demo: DemoDataSummary
) -> None:
    again = _generate(db_engine)  # same seed, same database: no unique-key errors
    other = _generate(db_engine, seed=SEED + 1)
    try:
        with db_engine.connect() as conn:
            first, second = _content(conn, demo.run), _content(conn, again.run)
            assert first == second
            assert _content(conn, other.run)["messages"] != first["messages"]
            assert set(_ids(conn, demo.run)).isdisjoint(_ids(conn, again.run))
            again_ids = _ids(conn, again.run)
    finally:
        _purge(db_engine, other.run)
        _purge(db_engine, again.run)
    replay = _generate(db_engine, run=again.run)  # same seed and run: the very same ids
    try:
        with db_engine.connect() as conn:
            assert _ids(conn, replay.run) == again_ids
    finally:
        _purge(db_engine, replay.run)


SYNC_QUERIES = {  # (table, owner column, tie-breaker) -> the index that must serve it
    ("channels", "owner_id", "id"): "ix_channels_owner_updated",
    ("channel_members", "user_id", "channel_id"): "ix_channel_members_user_updated",
    ("messages", "channel_id", "id"): "ix_messages_channel_updated",
    ("messages", "author_id", "id"): "ix_messages_author_updated",
    ("contacts", "owner_id", "id"): "ix_contacts_owner_updated",
    ("user_settings", "user_id", "key"): "ix_user_settings_user_updated",
    ("tasks", "user_id", "id"): "ix_tasks_user_updated",
    ("decisions", "user_id", "id"): "ix_decisions_user_updated",
}


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


@pytest.mark.parametrize(("table", "owner", "tie"), list(SYNC_QUERIES))
def test_changes_since_cursor_are_one_index_range_scan(
    db_engine: Engine, demo: DemoDataSummary, table: str, owner: str, tie: str
) -> None:
    """ "Rows of owner X changed after (T, last key), tombstones included, in order, a page".

    A test database is too small for the planner to prefer any index over a sequential
    scan, so sequential and bitmap scans are switched off: what is checked is that the
    index matches this query shape (both bounds in the Index Cond, no Sort), which is
    what makes it an index range scan at production sizes.
    """
    sql = (
        f"EXPLAIN (FORMAT JSON) SELECT * FROM {table} WHERE {owner} = :owner "
        f"AND (updated_at, {tie}) > (:since, :after) ORDER BY updated_at, {tie} LIMIT 500"
    )
    with db_engine.connect() as conn, conn.begin():
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        conn.execute(text("SET LOCAL enable_bitmapscan = off"))
        owner_id = _scalar(
            conn, f"SELECT {owner} FROM {table} WHERE {OWNED_BY_RUN[table]} LIMIT 1", run=demo.run
        )
        after: Any = "" if tie == "key" else uuid.UUID(int=0)
        params = {"owner": owner_id, "since": NOW - timedelta(days=30), "after": after}
        raw = conn.execute(text(sql), params).scalar_one()
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    scans = [node for node in _plan_nodes(plan) if "Index Name" in node]
    assert [node["Index Name"] for node in scans] == [SYNC_QUERIES[(table, owner, tie)]]
    assert scans[0]["Node Type"] in {"Index Scan", "Index Only Scan"}
    assert "updated_at" in scans[0]["Index Cond"] and "Filter" not in scans[0]
    assert not [node for node in _plan_nodes(plan) if node["Node Type"] == "Sort"]


PRIMARY_KEYS = {"channel_members": ("channel_id", "user_id"), "user_settings": ("user_id", "key")}


@pytest.mark.parametrize("table", PRODUCT_TABLES)
def test_raw_sql_updates_bump_updated_at(
    db_engine: Engine, demo: DemoDataSummary, table: str
) -> None:
    key = PRIMARY_KEYS.get(table, ("id",))
    pick = f"SELECT {', '.join(key)}, updated_at FROM {table} WHERE deleted_at IS NULL AND "
    where = " AND ".join(f"{column} = :{column}" for column in key)
    with db_engine.connect() as conn, conn.begin() as tx:
        row = conn.execute(text(pick + OWNED_BY_RUN[table] + " LIMIT 1"), {"run": demo.run})
        params = dict(row.one()._mapping)
        noop = f"UPDATE {table} SET deleted_at = deleted_at WHERE {where} RETURNING updated_at"
        unchanged = _scalar(conn, noop, **params)
        # A raw soft delete, even one that tries to set updated_at itself, is stamped now().
        tombstone = (
            f"UPDATE {table} SET deleted_at = now(), updated_at = :old WHERE {where} "
            "RETURNING updated_at, deleted_at, now()"
        )
        stamped, deleted, now = conn.execute(text(tombstone), {**params, "old": NOW}).one()
        tx.rollback()
    assert unchanged == params["updated_at"]  # a no-op UPDATE does not make devices re-sync
    assert stamped == deleted == now > params["updated_at"]


def test_email_is_unique_among_live_users_only(db_engine: Engine, demo: DemoDataSummary) -> None:
    insert = text(
        "INSERT INTO users (id, email, display_name, locale, timezone) "
        "VALUES (gen_random_uuid(), :email, 'Copy', 'en-US', 'UTC')"
    )
    live = f"SELECT email FROM users WHERE deleted_at IS NULL AND {OWNED_BY_RUN['users']} LIMIT 2"
    with db_engine.connect() as conn, conn.begin() as tx:
        leaving, staying = conn.execute(text(live), {"run": demo.run}).scalars()
        conn.execute(text("UPDATE users SET deleted_at = now() WHERE email = :e"), {"e": leaving})
        conn.execute(insert, {"email": leaving})  # a tombstoned user frees the address
        with pytest.raises(IntegrityError, match="uq_users_tenant_email_live"), conn.begin_nested():
            conn.execute(insert, {"email": staying})
        tx.rollback()


def _only_product_tables(obj: Any, name: str | None, type_: str, *_: Any) -> bool:
    return type_ != "table" or name in PRODUCT_TABLES


def test_migration_round_trip_and_models_match() -> None:
    url = create_database("conveyor_test_roundtrip")  # a scratch database, already at head
    config = alembic_config(url)
    engine = create_engine(url, poolclass=pool.NullPool)
    tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY(:t)"
    triggers = "SELECT count(*) FROM pg_trigger WHERE tgname LIKE '%\\_touch\\_updated\\_at'"
    try:
        command.downgrade(config, "0001_jobs")
        with engine.connect() as conn:
            assert _scalar(conn, tables, t=list(PRODUCT_TABLES)) == 0
            assert _scalar(conn, "SELECT to_regproc('conveyor_touch_updated_at')") is None
        command.upgrade(config, "head")
        with engine.connect() as conn:
            assert _scalar(conn, tables, t=list(PRODUCT_TABLES)) == len(PRODUCT_TABLES)
            assert _scalar(conn, triggers) == len(PRODUCT_TABLES)
            context = MigrationContext.configure(
                conn, opts={"include_object": _only_product_tables}
            )
            assert compare_metadata(context, Base.metadata) == []  # migration matches models
    finally:
        engine.dispose()
        drop_database(url)


def test_rejects_impossible_requests(db_engine: Engine) -> None:
    with pytest.raises(ValueError, match="at least one user"):
        generate_demo_data(db_engine, users=0, messages=5)
    with pytest.raises(ValueError, match="run token"):
        generate_demo_data(db_engine, users=1, messages=0, run="Not-Valid")
