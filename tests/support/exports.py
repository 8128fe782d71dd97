"""Export tests: product rows with hostile content, and independent readers for every format."""

from __future__ import annotations

import gzip
import io
import json
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import openpyxl
from pypdf import PdfReader
from sqlalchemy import Engine, text

HOSTILE = [
    '=HYPERLINK("http://evil.example","x")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A9)",
    "\tindented",
    "<script>alert('x')</script>",
    "bell\x07 and bidi \u202eexe.txt",
]


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso).replace(tzinfo=UTC)


@dataclass
class World:
    """One owner (Europe/Oslo), one other member, their channel, contacts, tasks, decisions."""

    owner: uuid.UUID
    other: uuid.UUID
    channel: uuid.UUID
    identifiers: list[str] = field(default_factory=list)  # must never appear anonymized
    march_messages: set[str] = field(default_factory=set)  # ids inside March (Oslo)
    outside_messages: set[str] = field(default_factory=set)
    owner_march_messages: int = 0


def seed(engine: Engine) -> World:
    tag = uuid.uuid4().hex[:8]
    world = World(uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    owner_email, other_email = f"alice.{tag}@owner.example", f"bob.{tag}@other.example"
    with engine.begin() as conn:
        for uid, email, name in (
            (world.owner, owner_email, f"Alice Owner{tag}"),
            (world.other, other_email, f"Bob Member{tag}"),
        ):
            conn.execute(
                text(
                    "INSERT INTO users (id, email, display_name, locale, timezone)"
                    " VALUES (:id, :email, :name, 'en', 'Europe/Oslo')"
                ),
                {"id": uid, "email": email, "name": name},
            )
            world.identifiers += [str(uid), email, name]
        conn.execute(
            text(
                "INSERT INTO channels (id, owner_id, name, kind)"
                " VALUES (:c, :o, 'general', 'group')"
            ),
            {"c": world.channel, "o": world.owner},
        )
        for uid in (world.owner, world.other):
            conn.execute(
                text(
                    "INSERT INTO channel_members (channel_id, user_id, role)"
                    " VALUES (:c, :u, 'member')"
                ),
                {"c": world.channel, "u": uid},
            )
        _messages(conn, world, tag)
        _owned_rows(conn, world, tag)
    return world


def _messages(conn: Any, world: World, tag: str) -> None:
    phone = "+47 912 34 567"
    bodies = [*HOSTILE, f"mail me at bob.{tag}@other.example or call {phone}", "plain words"]
    times = [
        ("2026-02-28T23:30:00", True),  # 00:30 on March 1 in Oslo (CET)
        ("2026-03-29T00:30:00", True),  # the DST day
        ("2026-03-31T21:30:00", True),  # 23:30 on March 31 (CEST)
        ("2026-02-28T22:30:00", False),  # 23:30 on Feb 28 in Oslo
        ("2026-03-31T22:30:00", False),  # 00:30 on April 1 (CEST)
    ]
    for i, body in enumerate(bodies):
        when, inside = times[i % len(times)]
        message_id = uuid.uuid4()
        conn.execute(
            text(
                "INSERT INTO messages (id, channel_id, author_id, body, created_at)"
                " VALUES (:id, :c, :a, :b, :t)"
            ),
            {
                "id": message_id,
                "c": world.channel,
                "a": world.owner if i % 2 else world.other,
                "b": body,
                "t": at(when),
            },
        )
        (world.march_messages if inside else world.outside_messages).add(str(message_id))
        world.owner_march_messages += int(inside and bool(i % 2))


def _owned_rows(conn: Any, world: World, tag: str) -> None:
    contact = (f"Carol Contact{tag}", f"carol.{tag}@contact.example", "+1 (555) 123-4567")
    world.identifiers += [*contact, "555) 123-4567"]
    conn.execute(
        text(
            "INSERT INTO contacts (id, owner_id, name, email, phone, company, notes, created_at)"
            " VALUES (:id, :o, :n, :e, :p, 'Acme', :notes, :t)"
        ),
        {
            "id": uuid.uuid4(),
            "o": world.owner,
            "n": contact[0],
            "e": contact[1],
            "p": contact[2],
            "notes": f"reach at {contact[1]}",
            "t": at("2026-03-10T10:00:00"),
        },
    )
    for i, status in enumerate(["done", "open", "open"]):
        conn.execute(
            text(
                "INSERT INTO tasks (id, user_id, title, status, created_at, due_at, completed_at)"
                " VALUES (:id, :u, :title, :s, :c, :d, :done)"
            ),
            {
                "id": uuid.uuid4(),
                "u": world.owner,
                "title": HOSTILE[i],
                "s": status,
                "c": at(f"2026-03-0{i + 2}T09:00:00"),
                "d": at("2026-03-20T09:00:00"),
                "done": at("2026-03-05T09:00:00") if status == "done" else None,
            },
        )
    conn.execute(
        text(
            "INSERT INTO decisions (id, user_id, channel_id, title, outcome, decided_at)"
            " VALUES (:id, :u, :c, :t, :o, :at)"
        ),
        {
            "id": uuid.uuid4(),
            "u": world.owner,
            "c": world.channel,
            "t": "<b>Ship it</b>",
            "o": "=2+2 approved",
            "at": at("2026-03-15T12:00:00"),
        },
    )


def seed_messages(engine: Engine, rows: int) -> uuid.UUID:
    """A user with one channel and `rows` messages in March 2026 (SQL generate_series)."""
    user, channel = uuid.uuid4(), uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, email, display_name, locale, timezone)"
                " VALUES (:u, :e, 'Bench User', 'en', 'Europe/Oslo')"
            ),
            {"u": user, "e": f"bench-{user.hex[:8]}@example.org"},
        )
        conn.execute(
            text("INSERT INTO channels (id, owner_id, name, kind) VALUES (:c, :u, 'b', 'group')"),
            {"c": channel, "u": user},
        )
        conn.execute(
            text(
                "INSERT INTO channel_members (channel_id, user_id, role) VALUES (:c, :u, 'owner')"
            ),
            {"c": channel, "u": user},
        )
        conn.execute(
            text(
                "INSERT INTO messages (id, channel_id, author_id, body, created_at)"
                " SELECT gen_random_uuid(), :c, :u,"
                " 'message number ' || g || ': the quarterly numbers look fine, call me at 10',"
                " timestamptz '2026-03-01 12:00+00' + g * interval '2 second'"
                " FROM generate_series(1, :n) g"
            ),
            {"c": channel, "u": user, "n": rows},
        )
        conn.execute(text("ANALYZE messages"))
    return user


def decompress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.decompress(data)
    if compression == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            [member] = archive.namelist()
            return archive.read(member)
    return data


def read_rows(fmt: str, data: bytes, tmp: Path) -> list[dict[str, Any]]:
    """Rows as dicts, through a reader that is not ours: DuckDB, openpyxl or html.parser."""
    if fmt == "xlsx":
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
        rows = list(book["Data"].iter_rows(values_only=True))
        return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]  # type: ignore[arg-type]
    if fmt == "html":
        return _html_rows(data.decode())
    path = tmp / f"read.{fmt}"
    path.write_bytes(data)
    reader = {
        "csv": "read_csv(?, all_varchar = true)",
        "json": "read_json(?, format = 'array')",
        "jsonl": "read_json(?, format = 'newline_delimited')",
        "parquet": "read_parquet(?)",
    }[fmt]
    with duckdb.connect() as conn:
        result = conn.execute(f"SELECT * FROM {reader}", [str(path)])
        names = [d[0] for d in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


class _Table(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def _html_rows(document: str) -> list[dict[str, Any]]:
    table = _Table()
    table.feed(document)
    assert table.scripts == 0, "an export must never contain a script element"
    header, *rows = table.rows
    return [dict(zip(header, row, strict=True)) for row in rows]


def json_text(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, default=str)
