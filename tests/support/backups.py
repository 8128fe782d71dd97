"""Helpers for the backup tests: a user's rows as plain tuples, edits, and a wipe."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text

from workers.backups.tables import TABLES

Snapshot = dict[str, list[tuple[Any, ...]]]


def snapshot(engine: Engine, user_id: uuid.UUID) -> Snapshot:
    """Every row of the user in every product table, all columns, in key order."""
    out: Snapshot = {}
    with engine.connect() as conn:
        for spec in TABLES:
            query = (
                f"SELECT * FROM {spec.name} WHERE {spec.owner} = :u ORDER BY {', '.join(spec.key)}"
            )
            out[spec.name] = [tuple(r) for r in conn.execute(text(query), {"u": user_id})]
    return out


def live_content(snap: Snapshot, engine: Engine) -> Snapshot:
    """Live rows without updated_at (which the trigger restamps on every restored update)."""
    out: Snapshot = {}
    with engine.connect() as conn:
        for spec in TABLES:
            cols = [
                r[0]
                for r in conn.execute(
                    text(
                        "SELECT column_name FROM information_schema.columns WHERE table_name = :t "
                        "AND table_schema = current_schema() ORDER BY ordinal_position"
                    ),
                    {"t": spec.name},
                )
            ]
            deleted, updated = cols.index("deleted_at"), cols.index("updated_at")
            out[spec.name] = [
                tuple(v for i, v in enumerate(row) if i != updated)
                for row in snap[spec.name]
                if row[deleted] is None
            ]
    return out


def wipe(engine: Engine, user_id: uuid.UUID) -> None:
    """Hard-delete the user's rows, children first (the data loss a restore repairs)."""
    with engine.begin() as conn:
        for spec in reversed(TABLES):
            conn.execute(text(f"DELETE FROM {spec.name} WHERE {spec.owner} = :u"), {"u": user_id})


@dataclass
class Editor:
    """Inserts, updates and soft-deletes across the user's tables, each in one transaction."""

    engine: Engine
    user_id: uuid.UUID
    rng: random.Random

    def run(self, sql: str, **params: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(sql), {"u": self.user_id, **params})

    def channel(self) -> uuid.UUID:
        with self.engine.connect() as conn:
            return uuid.UUID(
                str(
                    conn.execute(
                        text("SELECT id FROM channels WHERE owner_id = :u ORDER BY id LIMIT 1"),
                        {"u": self.user_id},
                    ).scalar_one()
                )
            )

    def round(self, n: int) -> None:
        channel = self.channel()
        for _ in range(n):
            self.run(
                "INSERT INTO messages (id, channel_id, author_id, body) VALUES (:id, :c, :u, :b)",
                id=uuid.uuid4(),
                c=channel,
                b=f"new message {self.rng.random()}",
            )
        self.run(
            "INSERT INTO contacts (id, owner_id, name, email) VALUES (:id, :u, :n, :e)",
            id=uuid.uuid4(),
            n=f"Contact {self.rng.random():.6f}",
            e="c@example.org",
        )
        self.run(
            "INSERT INTO tasks (id, user_id, title, status) VALUES (:id, :u, :t, 'open')",
            id=uuid.uuid4(),
            t=f"task {self.rng.random():.6f}",
        )
        self.run(
            "INSERT INTO decisions (id, user_id, channel_id, title, outcome, decided_at) "
            "VALUES (:id, :u, :c, 'decide', 'yes', now())",
            id=uuid.uuid4(),
            c=channel,
        )
        self._edit_some("messages", "author_id", "body = body || ' (edited)', edited_at = now()", n)
        self._edit_some("contacts", "owner_id", "notes = 'updated'", 1)
        self._edit_some("messages", "author_id", "deleted_at = now()", max(1, n // 2))
        self._edit_some("contacts", "owner_id", "deleted_at = now()", 1)
        self.run(
            "INSERT INTO user_settings (user_id, key, value) VALUES (:u, 'theme', :v) "
            "ON CONFLICT (user_id, key) DO UPDATE SET value = EXCLUDED.value",
            v=f'"{self.rng.choice(["dark", "light", "blue"])}{self.rng.random():.4f}"',
        )

    def _edit_some(self, table: str, owner: str, assignment: str, n: int) -> None:
        self.run(
            f"UPDATE {table} SET {assignment} WHERE id IN (SELECT id FROM {table} "
            f"WHERE {owner} = :u AND deleted_at IS NULL ORDER BY md5(id::text || :salt) LIMIT :n)",
            n=n,
            salt=str(self.rng.random()),
        )


def add_bystander(engine: Engine, tenant: str = "default") -> uuid.UUID:
    """Another user with a channel, messages and a contact: restores must never touch them.
    Its rows belong to `tenant` (they take the writing transaction's tenant)."""
    user_id = uuid.uuid4()
    channel = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(text("SELECT set_config('conveyor.tenant_id', :t, true)"), {"t": tenant})
        conn.execute(
            text(
                "INSERT INTO users (id, email, display_name, locale, timezone) "
                "VALUES (:u, :e, 'Bystander', 'en', 'UTC')"
            ),
            {"u": user_id, "e": f"{user_id}@example.org"},
        )
        conn.execute(
            text("INSERT INTO channels (id, owner_id, name, kind) VALUES (:c, :u, 'b', 'group')"),
            {"c": channel, "u": user_id},
        )
        for i in range(5):
            conn.execute(
                text(
                    "INSERT INTO messages (id, channel_id, author_id, body) "
                    "VALUES (:id, :c, :u, :b)"
                ),
                {"id": uuid.uuid4(), "c": channel, "u": user_id, "b": f"bystander {i}"},
            )
        conn.execute(
            text("INSERT INTO contacts (id, owner_id, name) VALUES (:id, :u, 'x')"),
            {"id": uuid.uuid4(), "u": user_id},
        )
    return user_id


def only_user(engine: Engine) -> uuid.UUID:
    with engine.connect() as conn:
        return uuid.UUID(
            str(conn.execute(text("SELECT id FROM users ORDER BY created_at LIMIT 1")).scalar_one())
        )
