"""Realistic-looking demo data for the product tables, bulk-loaded with PostgreSQL COPY.

`generate_demo_data` is what `conveyor demo-data --users N --messages M` calls. Content
(names, bodies, timestamps, who talks where) depends only on `seed` and `now`; ids and
emails also depend on a per-call `run` token, so calling it twice on one database never
collides while two calls with the same seed still produce the same data modulo ids.
Everything is written in one transaction; nothing goes through the ORM.
"""

from __future__ import annotations

import heapq
import random
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import psycopg
from sqlalchemy import Column, DateTime, Engine
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared.db.base import Base
from shared.db.demo_vocabulary import (
    COMPANIES,
    DECISION_TITLES,
    DOMAINS,
    FIRST,
    LAST,
    LOCALES,
    OUTCOMES,
    RATIONALES,
    SENTENCES,
    SETTINGS,
    SHORT_REPLIES,
    TASK_TITLES,
    THINGS,
    WORDS,
)
from shared.db.models.product import PRODUCT_TABLES

_Stamps = tuple[datetime, datetime, datetime | None]
_Rows = Iterator[tuple[Any, ...]]
_Timeline = Iterator[tuple[float, tuple[Any, ...]]]

DAY = 86_400.0
WINDOW_DAYS = 90
_RUN_TOKEN = re.compile(r"[a-z0-9]{1,32}")
_V4_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_V4_BITS = (0x4000 << 64) | (0x8000 << 48)
_LOW62 = (1 << 62) - 1


_TAIL = "created_at updated_at deleted_at"
COLUMNS = {
    "users": f"id email display_name locale timezone {_TAIL}",
    "channels": f"id owner_id name kind topic {_TAIL}",
    "channel_members": f"channel_id user_id role joined_at {_TAIL}",
    "messages": f"id channel_id author_id body reply_to_id edited_at {_TAIL}",
    "contacts": f"id owner_id name email phone company notes {_TAIL}",
    "user_settings": f"user_id key value {_TAIL}",
    "tasks": f"id user_id title notes status due_at completed_at source_message_id {_TAIL}",
    "decisions": f"id user_id channel_id title outcome rationale decided_at {_TAIL}",
}


@dataclass(frozen=True)
class DemoDataSummary:
    run: str
    users: int
    channels: int
    channel_members: int
    messages: int
    contacts: int
    user_settings: int
    tasks: int
    decisions: int
    elapsed_s: float

    def counts(self) -> dict[str, int]:
        return {table: int(getattr(self, table)) for table in PRODUCT_TABLES}


def generate_demo_data(
    engine: Engine,
    *,
    users: int,
    messages: int,
    seed: int = 0,
    run: str | None = None,
    now: datetime | None = None,
) -> DemoDataSummary:
    """Insert `users` users, `messages` messages and everything around them; one transaction.

    `run` (default: random) goes into every email and seeds the ids; pass the same run only
    to reproduce ids in another database. Timestamps fall in the 90 days before `now`.
    """
    if users < 0 or messages < 0 or (users == 0 and messages > 0):
        raise ValueError("need users >= 0, messages >= 0, and at least one user for messages")
    if now is not None and now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    run = run or uuid.uuid4().hex[:10]
    if not _RUN_TOKEN.fullmatch(run):
        raise ValueError(f"run token must match {_RUN_TOKEN.pattern}: {run!r}")
    started = time.perf_counter()
    gen = _Generator(seed=seed, run=run, now=now or datetime.now(UTC))
    proxy = engine.raw_connection()
    try:
        conn = proxy.driver_connection
        if not isinstance(conn, psycopg.Connection):
            raise TypeError("demo data is loaded with COPY and needs the psycopg driver")
        with conn.cursor() as cur:
            counts = gen.load(cur, users=users, messages=messages)
            cur.execute("ANALYZE " + ", ".join(PRODUCT_TABLES))  # fresh stats for the planner
        proxy.commit()
    finally:
        proxy.close()  # the pool rolls back anything uncommitted
    return DemoDataSummary(run=run, elapsed_s=time.perf_counter() - started, **counts)


@dataclass(slots=True)
class _Channel:
    id: uuid.UUID
    kind: str
    members: list[int]  # user indexes; the first one owns the channel
    created: float = 0.0
    sample_messages: list[tuple[float, uuid.UUID]] = field(default_factory=list)  # for tasks


class _Generator:
    """Two random streams: `rng` for content (seed only), `_ids` for ids (seed and run)."""

    def __init__(self, *, seed: int, run: str, now: datetime) -> None:
        self.rng = random.Random(seed)
        self._ids = random.Random(f"{seed}:{run}")
        self.run = run
        self.now = now.timestamp()
        self.start = self.now - WINDOW_DAYS * DAY
        self.sentences = [self.fill(SENTENCES) for _ in range(4096)]
        self.user_ids: list[uuid.UUID] = []
        self.user_created: list[float] = []
        self.user_channels: list[list[int]] = []
        self.channels: list[_Channel] = []

    def uuid4(self) -> uuid.UUID:
        """A random (version 4) UUID drawn from the seeded id stream."""
        return uuid.UUID(int=self._ids.getrandbits(128) & _V4_MASK | _V4_BITS)

    def uuid7(self, ts: float) -> uuid.UUID:
        """A time-ordered (version 7) UUID: index inserts append instead of landing randomly."""
        rand = self._ids.getrandbits(74)
        bits = int(ts * 1000) << 80 | 7 << 76 | (rand >> 62) << 64 | 2 << 62 | rand & _LOW62
        return uuid.UUID(int=bits)

    def fill(self, templates: tuple[str, ...]) -> str:
        text = self.rng.choice(templates).format_map(_Slots(self.rng))
        return text[0].upper() + text[1:]

    def text(self, max_sentences: int = 3) -> str:
        n = 1 + int(self.rng.random() ** 2 * max_sentences)
        pool = self.sentences
        return " ".join(pool[int(self.rng.random() * len(pool))] for _ in range(n))

    def since(self, born: float) -> float:
        """A moment between `born` and now."""
        return born + self.rng.random() * (self.now - born)

    def lifecycle(self, created: float, p_update: float, p_delete: float) -> _Stamps:
        """(created_at, updated_at, deleted_at) for a row born at `created`."""
        deleted = self.since(created) if self.rng.random() < p_delete else None
        updated = self.since(created) if self.rng.random() < p_update else created
        updated = max(updated, deleted or updated)
        return _at(created), _at(updated), None if deleted is None else _at(deleted)

    def load(self, cur: psycopg.Cursor[Any], *, users: int, messages: int) -> dict[str, int]:
        counts = {"users": _copy(cur, "users", _users(self, users))}
        _plan_channels(self)
        counts["channels"] = _copy(cur, "channels", _channels(self))
        counts["channel_members"] = _copy(cur, "channel_members", _members(self))
        counts["messages"] = _copy(cur, "messages", _messages(self, messages))
        counts["contacts"] = _copy(cur, "contacts", _contacts(self))
        counts["user_settings"] = _copy(cur, "user_settings", _settings(self))
        counts["tasks"] = _copy(cur, "tasks", _tasks(self))
        counts["decisions"] = _copy(cur, "decisions", _decisions(self))
        return counts


class _Slots(dict[str, str]):
    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self._rng = rng

    def __missing__(self, key: str) -> str:
        return self._rng.choice(WORDS[key])


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _copy(cur: psycopg.Cursor[Any], table: str, rows: Iterable[tuple[Any, ...]]) -> int:
    """Binary COPY: PostgreSQL parses binary uuids and timestamps far cheaper than text."""
    columns = COLUMNS[table].split()
    written = 0
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT binary)") as copy:
        copy.set_types([_pg_type(Base.metadata.tables[table].c[name]) for name in columns])
        for row in rows:
            copy.write_row(row)
            written += 1
    return written


def _pg_type(column: Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, UUID):
        return "uuid"
    if isinstance(kind, DateTime):
        return "timestamptz"
    return "jsonb" if isinstance(kind, JSONB) else "text"  # String/Text share text's format


def _users(gen: _Generator, count: int) -> _Rows:
    rng = gen.rng
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{first}.{last}{i}+{gen.run}@{rng.choice(DOMAINS)}".lower()
        locale, tz = rng.choice(LOCALES)
        created = gen.start + rng.random() * 10 * DAY
        uid = gen.uuid4()
        gen.user_ids.append(uid)
        gen.user_created.append(created)
        gen.user_channels.append([])
        yield (uid, email, f"{first} {last}", locale, tz, *gen.lifecycle(created, 0.3, 0.01))


def _plan_channels(gen: _Generator) -> None:
    """About one direct conversation per user, plus a group channel of 3-40 per 8 users."""
    rng, n = gen.rng, len(gen.user_ids)
    pairs: set[tuple[int, int]] = set()
    for i in range(n if n > 1 else 0):
        j = (i + 1 + int(rng.random() * (n - 1))) % n
        if (min(i, j), max(i, j)) not in pairs:
            pairs.add((min(i, j), max(i, j)))
            gen.channels.append(_Channel(gen.uuid4(), "direct", [i, j]))
    for _ in range(max(1, n // 8) if n else 0):
        size = min(n, 3 + int(rng.paretovariate(1.3) * 3), 40)
        gen.channels.append(_Channel(gen.uuid4(), "group", rng.sample(range(n), size)))
    for index, channel in enumerate(gen.channels):
        newest_member = max(gen.user_created[u] for u in channel.members)
        channel.created = newest_member + rng.random() * 10 * DAY
        for u in channel.members:
            gen.user_channels[u].append(index)


def _channels(gen: _Generator) -> _Rows:
    rng = gen.rng
    for ch in gen.channels:
        owner, group = gen.user_ids[ch.members[0]], ch.kind == "group"
        name = f"{rng.choice(THINGS).replace(' ', '-')}-{rng.choice(LAST).lower()}"
        topic = gen.text(1) if group and rng.random() < 0.6 else None
        stamps = gen.lifecycle(ch.created, 0.2, 0.02 if group else 0.0)
        yield (ch.id, owner, name if group else None, ch.kind, topic, *stamps)


def _members(gen: _Generator) -> _Rows:
    rng = gen.rng
    for ch in gen.channels:
        for position, u in enumerate(ch.members):
            role = "owner" if position == 0 else "admin" if rng.random() < 0.1 else "member"
            joined = ch.created + (rng.random() * 3600 if position else 0.0)
            p_leave = 0.02 if position and ch.kind == "group" else 0.0
            stamps = gen.lifecycle(joined, 0.05, p_leave)
            yield (ch.id, gen.user_ids[u], role, _at(joined), *stamps)


def _message_counts(gen: _Generator, total: int) -> list[int]:
    """Split `total` over channels with heavy-tailed weights (groups busier than directs)."""
    rng = gen.rng
    weights = [
        min(rng.paretovariate(1.2), 40.0) * (4 if ch.kind == "group" else 1) for ch in gen.channels
    ]
    if not weights:
        return []
    scale = total / sum(weights)
    counts = [int(w * scale) for w in weights]
    for extra in rng.choices(range(len(counts)), weights, k=total - sum(counts)):
        counts[extra] += 1
    return counts


def _messages(gen: _Generator, total: int) -> _Rows:
    """All channels' messages merged into one timeline: heap and primary key grow in order."""
    counts = _message_counts(gen, total)
    streams = [_channel_messages(gen, ch, n) for ch, n in zip(gen.channels, counts, strict=True)]
    for _, row in heapq.merge(*streams, key=itemgetter(0)):
        yield row


def _channel_messages(gen: _Generator, ch: _Channel, count: int) -> _Timeline:
    """`count` messages in time order: a few members talk most, some replies, edits, deletes."""
    rng, rand, now = gen.rng, gen.rng.random, gen.now
    begin = ch.created + 3600.0
    times = sorted(begin + rand() * (now - 60.0 - begin) for _ in range(count))
    authors = [gen.user_ids[u] for u in ch.members]
    recent: list[uuid.UUID | None] = [None] * 8
    sample_every = max(1, count // 6)
    for i, created in enumerate(times):
        mid = gen.uuid7(created)
        author = authors[int(len(authors) * rand() ** 2)]
        body = rng.choice(SHORT_REPLIES) if rand() < 0.2 else gen.text()
        reply_to = recent[int(rand() * 8)] if rand() < 0.08 else None
        edited = min(created + rand() * 7200, now) if rand() < 0.04 else None
        deleted = min(created + rand() * 3 * DAY, now) if rand() < 0.01 else None
        updated = max(created, edited or created, deleted or created)
        yield created, (
            mid, ch.id, author, body, reply_to, edited and _at(edited),
            _at(created), _at(updated), deleted and _at(deleted),
        )  # fmt: skip
        recent[i % 8] = mid
        if i % sample_every == 0:
            ch.sample_messages.append((created, mid))


def _contacts(gen: _Generator) -> _Rows:
    rng = gen.rng
    for owner, born in zip(gen.user_ids, gen.user_created, strict=True):
        for _ in range(2 + int(rng.random() * 15)):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            email = f"{first}.{last}@{rng.choice(DOMAINS)}".lower() if rng.random() < 0.85 else None
            phone = _phone(rng) if rng.random() < 0.6 else None
            company = rng.choice(COMPANIES) if rng.random() < 0.7 else None
            notes = gen.text(2) if rng.random() < 0.3 else None
            stamps = gen.lifecycle(gen.since(born), 0.3, 0.03)
            yield (gen.uuid4(), owner, f"{first} {last}", email, phone, company, notes, *stamps)


def _phone(rng: random.Random) -> str:
    return f"+1 {rng.randint(201, 989)} 555 01{rng.randrange(100):02d}"  # 555-01xx: fictional


def _settings(gen: _Generator) -> _Rows:
    rng = gen.rng
    for owner, born in zip(gen.user_ids, gen.user_created, strict=True):
        for key in rng.sample(sorted(SETTINGS), rng.randint(3, len(SETTINGS))):
            value = SETTINGS[key](rng)  # COPY dumps it as JSONB
            yield (owner, key, value, *gen.lifecycle(born + rng.random() * DAY, 0.4, 0.02))


def _tasks(gen: _Generator) -> _Rows:
    rng = gen.rng
    for u, owner in enumerate(gen.user_ids):
        for _ in range(int(rng.random() * 13)):
            title, notes = gen.fill(TASK_TITLES), gen.text(2) if rng.random() < 0.4 else None
            created = gen.since(gen.user_created[u])
            stamps = gen.lifecycle(created, 0.5, 0.03)
            completed = stamps[1] if rng.random() < 0.4 else None  # completing is the update
            due = _at(created + rng.random() * 14 * DAY) if rng.random() < 0.6 else None
            source = _source_message(gen, u, created) if rng.random() < 0.25 else None
            status = "open" if completed is None else "done"
            yield (gen.uuid4(), owner, title, notes, status, due, completed, source, *stamps)


def _source_message(gen: _Generator, user: int, before: float) -> uuid.UUID | None:
    """A message the task was made from: in one of the user's channels, and older."""
    channels = gen.user_channels[user]
    samples = gen.channels[gen.rng.choice(channels)].sample_messages if channels else []
    older = [mid for at, mid in samples if at <= before]
    return gen.rng.choice(older) if older else None


def _decisions(gen: _Generator) -> _Rows:
    rng = gen.rng
    for u, owner in enumerate(gen.user_ids):
        channels = gen.user_channels[u]
        for _ in range(int(rng.random() * 6)):
            in_channel = channels and rng.random() < 0.6
            channel = gen.channels[rng.choice(channels)].id if in_channel else None
            title, outcome = gen.fill(DECISION_TITLES), gen.fill(OUTCOMES)
            rationale = gen.fill(RATIONALES) if rng.random() < 0.7 else None
            created = gen.since(gen.user_created[u] + 2 * DAY)
            decided = _at(created - rng.random() * 2 * DAY)  # recorded after it was made
            stamps = gen.lifecycle(created, 0.2, 0.02)
            yield (gen.uuid4(), owner, channel, title, outcome, rationale, decided, *stamps)
