"""A scripted device: what a mobile client does, written from docs/sync.md, over HTTP.

It keeps a local replica of registers (value + HLC + writer per field, and a tombstone), stamps
offline edits with its hybrid logical clock, sends them with its cursor, and merges the delta
it gets back by the same last-writer-wins rule.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from shared.crypto import KeyRing
from shared.db.engine import session_scope
from shared.db.models import User
from shared.embedded import EmbeddedS3
from tests.support.oauth import new_master_keys
from tests.support.services import wait_for
from tests.support.stack import Stack
from workers.sync.cursor import CursorKeys
from workers.sync.hlc import Hlc, parse, receive

MASTER_KEYS = new_master_keys()  # cursors are signed with the key ring
CURSOR_KEYS = CursorKeys.from_ring(KeyRing.parse(MASTER_KEYS))

Key = tuple[str, str]
# docs/sync.md "Entity types": a create sets every writable field, unset ones to these.
CREATE_DEFAULTS: dict[str, dict[str, Any]] = {
    "contact": {"email": None, "phone": None, "company": None, "notes": None},
    "task": {"notes": None, "status": "open", "due_at": None},
    "decision": {"rationale": None},
    "setting": {},
    "message": {"reply_to_id": None},
}
Register = tuple[Any, Hlc]


@dataclass
class Replica:
    fields: dict[str, Register] = field(default_factory=dict)
    tombstone: Hlc | None = None

    def deleted(self) -> bool:
        newest = max((h for _, h in self.fields.values()), default=None)
        return self.tombstone is not None and (newest is None or self.tombstone > newest)


@dataclass
class SyncClient:
    stack: Stack
    device_id: str
    secret: str
    skew_ms: int = 0
    replica: dict[Key, Replica] = field(default_factory=dict)
    pending: list[dict[str, Any]] = field(default_factory=list)
    cursor: str | None = None
    clock: Hlc = field(init=False)
    last: dict[str, Any] = field(default_factory=dict)
    # What each entity looked like before its pending edits, to undo the refused ones.
    before: dict[Key, Replica | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.clock = Hlc(0, 0, self.device_id)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Device {self.secret}"}

    def _stamp(self) -> Hlc:
        self.clock = receive(self.clock, int(time.time() * 1000) + self.skew_ms)
        return self.clock

    def edit(self, kind: str, entity_id: str, **values: Any) -> None:
        stamp = self._stamp()
        self._remember(kind, entity_id)
        if (kind, entity_id) not in self.replica:
            values = {**CREATE_DEFAULTS[kind], **values}
        local = self.replica.setdefault((kind, entity_id), Replica())
        for name, value in values.items():
            local.fields[name] = (value, stamp)
        self.pending.append({"type": kind, "id": entity_id, "hlc": stamp.wire(), "fields": values})

    def delete(self, kind: str, entity_id: str) -> None:
        stamp = self._stamp()
        self._remember(kind, entity_id)
        self.replica.setdefault((kind, entity_id), Replica()).tombstone = stamp
        self.pending.append({"type": kind, "id": entity_id, "hlc": stamp.wire(), "delete": True})

    def _remember(self, kind: str, entity_id: str) -> None:
        if (kind, entity_id) not in self.before:
            local = self.replica.get((kind, entity_id))
            copy = Replica(dict(local.fields), local.tombstone) if local is not None else None
            self.before[(kind, entity_id)] = copy

    def _undo_refused(self, result: dict[str, Any]) -> None:
        """docs/sync.md: a refused change is undone locally (the rest of the batch stands)."""
        for refused in result["rejected"]:
            change = self.pending[refused["index"]]
            if not isinstance(change, dict) or not isinstance(change.get("id"), str):
                continue  # hand-made garbage: nothing was applied locally
            key = (change["type"], change["id"])
            previous = self.before.get(key)
            if previous is None:
                self.replica.pop(key, None)
            else:
                self.replica[key] = previous

    def send(self, *, upload: bool = False, batch_id: str | None = None) -> str:
        """Send pending changes; returns the sync job's id (the sync runs in a worker)."""
        body: dict[str, Any] = {"batch_id": batch_id or str(uuid.uuid4()), "cursor": self.cursor}
        if upload:
            slot = self.post("/sync/uploads", None, expect=201)
            body["batch_id"] = slot["batch_id"]
            put = httpx.put(slot["url"], json={"changes": self.pending}, timeout=30)
            assert put.status_code == 200, put.text
            body["uploaded"] = True
        else:
            body["changes"] = self.pending
        return str(self.post("/sync", body, expect=(200, 202))["job_id"])

    def post(self, path: str, body: Any, *, expect: int | tuple[int, ...]) -> dict[str, Any]:
        url = f"/v1/devices/{self.device_id}{path}"
        response = self.stack.client.post(url, json=body, headers=self.headers)
        wanted = expect if isinstance(expect, tuple) else (expect,)
        assert response.status_code in wanted, response.text
        return dict(response.json())

    def wait(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        url = f"/v1/devices/{self.device_id}/sync/{job_id}"

        def finished() -> dict[str, Any] | None:
            got = self.stack.client.get(url, headers=self.headers).json()
            return got if got["state"] in ("succeeded", "failed", "dead") else None

        return wait_for(finished, timeout=timeout, what=f"sync job {job_id}")  # type: ignore[return-value]

    def sync(self, *, upload: bool = False) -> dict[str, Any]:
        """One sync, paged deltas followed to the end (docs/sync.md "Paged deltas"). Returns
        the first answer plus `entities` (every page's, inline or fetched) and `pages`."""
        job = self.wait(self.send(upload=upload))
        assert job["state"] == "succeeded", job
        first = dict(job["result"])
        entities = self.receive(first)
        pages, result = 1, first
        while result["more"]:
            job = self.wait(self.send())  # no changes: they wait until the delta is complete
            assert job["state"] == "succeeded", job
            result = job["result"]
            entities += self.receive(result)
            pages += 1
        return {**first, "entities": entities, "pages": pages, "cursor": result["cursor"]}

    def receive(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        self.last = result
        entities: list[dict[str, Any]] = result["delta"]
        if entities is None:
            entities = httpx.get(result["delta_object"]["url"], timeout=30).json()["entities"]
        self._undo_refused(result)
        if result["full_resync"]:
            self.replica = {}
        for entity in entities:
            self._merge(entity)
        self._drop_left_channels(entities)
        self.clock = receive(self.clock, int(time.time() * 1000), parse(result["server_hlc"], "s"))
        self.pending = []
        self.before = {}
        self.cursor = result["cursor"]
        return entities

    def _drop_left_channels(self, entities: list[dict[str, Any]]) -> None:
        """docs/sync.md: a channel that arrives deleted takes its messages with it."""
        left = {e["id"] for e in entities if e["type"] == "channel" and e["deleted"]}
        for key, local in list(self.replica.items()):
            channel = local.fields.get("channel_id", (None,))[0]
            if key[0] == "message" and channel in left:
                del self.replica[key]

    def _merge(self, entity: dict[str, Any]) -> None:
        local = self.replica.setdefault((entity["type"], entity["id"]), Replica())
        for name, reg in entity["fields"].items():
            stamp = parse(reg["hlc"], reg["node"])
            if name not in local.fields or stamp > local.fields[name][1]:
                local.fields[name] = (reg["value"], stamp)
            self.clock = receive(self.clock, int(time.time() * 1000), stamp)
        if entity["tombstone"] is not None:
            stamp = parse(entity["tombstone"]["hlc"], entity["tombstone"]["node"])
            if local.tombstone is None or stamp > local.tombstone:
                local.tombstone = stamp

    def visible(self) -> dict[Key, dict[str, Any]]:
        return {
            key: {name: value for name, (value, _) in rep.fields.items()}
            for key, rep in self.replica.items()
            if not rep.deleted()
        }


def start_sync_stack(logs: Path, s3: EmbeddedS3, **worker_env: str) -> Stack:
    """A stack with a scheduler and a `sync` worker, all sharing a key ring for cursors."""
    stack = Stack.create(logs, s3=s3)
    stack.app_settings["master_keys"] = MASTER_KEYS
    stack.start_scheduler(CONVEYOR_MASTER_KEYS=MASTER_KEYS)
    env = {"CONVEYOR_SYNC_INLINE_DELTA_MAX_BYTES": "20000", **worker_env}
    stack.start_worker("sync", processes=1, threads=4, CONVEYOR_MASTER_KEYS=MASTER_KEYS, **env)
    return stack


def ident() -> str:
    return str(uuid.uuid4())


def new_user(stack: Stack) -> str:
    user_id = uuid.uuid4()
    with session_scope(stack.sessions) as session:
        session.add(
            User(
                id=user_id,
                email=f"{user_id.hex}@example.com",
                display_name="Sync Tester",
                locale="en",
                timezone="UTC",
            )
        )
    return str(user_id)


def new_device(stack: Stack, user_id: str, name: str = "phone", **client: Any) -> SyncClient:
    body = {"user_id": user_id, "name": name, "platform": "ios"}
    response = stack.client.post("/v1/devices", json=body, headers=stack.headers())
    assert response.status_code == 201, response.text
    created = response.json()
    return SyncClient(stack, created["id"], created["secret"], **client)


# What the product tables hold for a user, in the devices' wire form (docs/sync.md).
VIEWS = {
    "contact": "SELECT id::text, name, email, phone, company, notes FROM contacts "
    "WHERE owner_id = :u AND deleted_at IS NULL",
    "task": "SELECT id::text, title, notes, status, due_at FROM tasks "
    "WHERE user_id = :u AND deleted_at IS NULL",
    "setting": "SELECT key, value FROM user_settings WHERE user_id = :u AND deleted_at IS NULL",
    "channel": "SELECT c.id::text, c.name, c.kind, c.topic, c.owner_id::text, m.role, m.joined_at "
    "FROM channel_members m JOIN channels c ON c.id = m.channel_id "
    "WHERE m.user_id = :u AND m.deleted_at IS NULL AND c.deleted_at IS NULL",
    "message": "SELECT m.id::text, m.channel_id::text, m.body, m.reply_to_id::text "
    "FROM messages m JOIN channel_members cm ON cm.channel_id = m.channel_id "
    "AND cm.user_id = :u AND cm.deleted_at IS NULL "
    "JOIN channels c ON c.id = m.channel_id AND c.deleted_at IS NULL WHERE m.deleted_at IS NULL",
}


def server_view(stack: Stack, user_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    view: dict[tuple[str, str], dict[str, Any]] = {}
    with session_scope(stack.sessions) as session:
        for kind, sql in VIEWS.items():
            for row in session.execute(text(sql), {"u": user_id}).mappings():
                values = dict(row)
                ident = values.pop("id", None) or values.pop("key")
                for name in ("due_at", "joined_at"):
                    if values.get(name) is not None:
                        values[name] = values[name].astimezone(UTC).isoformat()
                view[(kind, ident)] = values
    return view


def conflicts(stack: Stack, user_id: str) -> list[dict[str, Any]]:
    response = stack.client.get(f"/v1/devices/conflicts?user_id={user_id}", headers=stack.headers())
    assert response.status_code == 200, response.text
    return list(response.json()["conflicts"])
