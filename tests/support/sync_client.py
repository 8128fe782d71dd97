"""A scripted device: what a mobile client does, written from docs/sync.md, over HTTP.

It keeps a local replica of registers (value + HLC + writer per field, and a tombstone), stamps
offline edits with its hybrid logical clock, sends them with its cursor, and merges the delta
it gets back by the same last-writer-wins rule.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.services import wait_for
from tests.support.stack import Stack
from workers.sync.hlc import Hlc, parse, receive

Key = tuple[str, str]
# docs/sync.md "Entity types": a create sets every writable field, unset ones to these.
CREATE_DEFAULTS: dict[str, dict[str, Any]] = {
    "contact": {"email": None, "phone": None, "company": None, "notes": None},
    "task": {"notes": None, "status": "open", "due_at": None},
    "decision": {"rationale": None},
    "setting": {},
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
        if (kind, entity_id) not in self.replica:
            values = {**CREATE_DEFAULTS[kind], **values}
        local = self.replica.setdefault((kind, entity_id), Replica())
        for name, value in values.items():
            local.fields[name] = (value, stamp)
        self.pending.append({"type": kind, "id": entity_id, "hlc": stamp.wire(), "fields": values})

    def delete(self, kind: str, entity_id: str) -> None:
        stamp = self._stamp()
        self.replica.setdefault((kind, entity_id), Replica()).tombstone = stamp
        self.pending.append({"type": kind, "id": entity_id, "hlc": stamp.wire(), "delete": True})

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
        job = self.wait(self.send(upload=upload))
        assert job["state"] == "succeeded", job
        self.receive(job["result"])
        return dict(job["result"])

    def receive(self, result: dict[str, Any]) -> None:
        self.last = result
        entities = result["delta"]
        if entities is None:
            entities = httpx.get(result["delta_object"]["url"], timeout=30).json()["entities"]
        if result["full_resync"]:
            self.replica = {}
        for entity in entities:
            self._merge(entity)
        self.clock = receive(self.clock, int(time.time() * 1000), parse(result["server_hlc"], "s"))
        self.pending = []
        self.cursor = result["cursor"]

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
