"""Stateful property test of the merge core: devices edit offline, sync in any order, with
duplicate deliveries and lost responses, and still converge with nothing silently lost.

The simulated server uses the same pure modules as the `device.sync` job (merge, delta); the
database only adds storage. `applied_at` is a logical clock standing in for `updated_at`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from workers.sync import hlc as hlc_mod
from workers.sync.delta import registers_for
from workers.sync.merge import (
    TOMBSTONE,
    Change,
    LossReason,
    Lost,
    State,
    apply,
    is_deleted,
    visible,
)

ENTITIES = ("e1", "e2", "e3")
FIELDS = ("a", "b")
DEVICES = ("dev-a", "dev-b", "dev-c")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Device:
    node: str
    clock: hlc_mod.Hlc
    wall_ms: int
    replica: dict[str, State] = field(default_factory=dict)
    pending: list[tuple[str, Change]] = field(default_factory=list)
    cursor: datetime | None = None

    def stamp(self) -> hlc_mod.Hlc:
        self.clock = hlc_mod.receive(self.clock, self.wall_ms)
        return self.clock


@dataclass
class Server:
    entities: dict[str, State] = field(default_factory=dict)
    log: list[tuple[str, Lost]] = field(default_factory=list)
    seq: int = 0

    def tick(self) -> datetime:
        self.seq += 1
        return T0 + timedelta(microseconds=self.seq)

    def sync(
        self, node: str, batch: list[tuple[str, Change]], cursor: datetime | None
    ) -> tuple[dict[str, State], datetime]:
        touched = set()
        for entity, change in batch:
            state, lost = apply(
                self.entities.get(entity, {}), change, applied_at=self.tick(), seen_until=cursor
            )
            self.entities[entity] = state
            self.log.extend((entity, x) for x in lost)
            touched.add(entity)
        watermark = self.tick()
        delta = {}
        for entity, state in self.entities.items():
            changed = cursor is None or any(v.applied_at >= cursor for v in state.values())
            if changed or entity in touched:
                registers = registers_for(state, node, full=False)
                if registers:
                    delta[entity] = registers
        return delta, watermark


def merge_registers(local: State, incoming: State) -> State:
    merged = dict(local)
    for name, version in incoming.items():
        if name not in merged or version.hlc > merged[name].hlc:
            merged[name] = version
    return merged


class SyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server = Server()
        self.devices: dict[str, Device] = {}
        self.accepted: list[tuple[str, str, Any]] = []  # entity, field, token
        self.deletes: set[str] = set()
        self.knowingly_overwritten: set[Any] = set()
        self.tokens = 0

    @initialize(offsets=st.lists(st.integers(-5_000, 5_000), min_size=3, max_size=3))
    def start(self, offsets: list[int]) -> None:
        for node, offset in zip(DEVICES, offsets, strict=True):
            wall = 1_800_000_000_000 + offset
            self.devices[node] = Device(node, hlc_mod.Hlc(0, 0, node), wall)

    @rule(
        node=st.sampled_from(DEVICES),
        entity=st.sampled_from(ENTITIES),
        fields=st.sets(st.sampled_from(FIELDS), min_size=1),
    )
    def edit(self, node: str, entity: str, fields: set[str]) -> None:
        device = self.devices[node]
        local = device.replica.get(entity, {})
        if local and is_deleted(local):
            return  # devices edit what they show; a deleted entity is gone from the UI
        values = {}
        for name in sorted(fields):
            self.tokens += 1
            values[name] = f"{node}:{self.tokens}"
            if name in local:
                self.knowingly_overwritten.add(local[name].value)
        change = Change(device.stamp(), values)
        device.replica[entity], _ = apply(local, change, applied_at=T0, seen_until=None)
        device.pending.append((entity, change))

    @rule(node=st.sampled_from(DEVICES), entity=st.sampled_from(ENTITIES))
    def delete(self, node: str, entity: str) -> None:
        device = self.devices[node]
        local = device.replica.get(entity)
        if not local or is_deleted(local):
            return
        self.knowingly_overwritten.update(v.value for f, v in local.items() if f != TOMBSTONE)
        change = Change(device.stamp(), {}, delete=True)
        device.replica[entity], _ = apply(local, change, applied_at=T0, seen_until=None)
        device.pending.append((entity, change))

    @rule(node=st.sampled_from(DEVICES), ms=st.integers(0, 3_000))
    def time_passes(self, node: str, ms: int) -> None:
        self.devices[node].wall_ms += ms

    @rule(node=st.sampled_from(DEVICES), duplicate=st.booleans(), response_lost=st.booleans())
    def sync(self, node: str, duplicate: bool, response_lost: bool) -> None:
        device = self.devices[node]
        batch = list(device.pending)
        delta, watermark = self.server.sync(node, batch, device.cursor)
        if duplicate:  # a redelivered job or a client retry: the same batch again
            delta, watermark = self.server.sync(node, batch, device.cursor)
        self._record_accepted(node, batch)
        if response_lost:
            return  # the device keeps its pending changes and cursor and will resend
        for entity, registers in delta.items():
            device.replica[entity] = merge_registers(device.replica.get(entity, {}), registers)
            for version in registers.values():
                device.clock = hlc_mod.receive(device.clock, device.wall_ms, version.hlc)
        device.pending = []
        device.cursor = watermark

    def _record_accepted(self, node: str, batch: list[tuple[str, Change]]) -> None:
        for entity, change in batch:
            if change.delete:
                self.deletes.add(entity)
            for name, value in change.fields.items():
                self.accepted.append((entity, name, value))

    def settle(self) -> None:
        for _ in range(2):
            for node in DEVICES:
                self.sync(node, duplicate=False, response_lost=False)

    @invariant()
    def server_values_come_from_accepted_writes(self) -> None:
        tokens = {token for _, _, token in self.accepted}
        for state in self.server.entities.values():
            assert all(v.value in tokens for f, v in state.items() if f != TOMBSTONE)

    @rule()
    def converge(self) -> None:
        self.settle()
        expected = {e: visible(s) for e, s in self.server.entities.items()}
        for device in self.devices.values():
            assert device.pending == []
            seen = {e: visible(s) for e, s in device.replica.items()}
            assert seen == expected, device.node
        self._nothing_silently_lost()

    def _nothing_silently_lost(self) -> None:
        surviving = {
            token
            for state in self.server.entities.values()
            for token in (visible(state) or {}).values()
        }
        logged = {lost.value for _, lost in self.server.log if lost.field != TOMBSTONE}
        for entity, name, token in self.accepted:
            assert token in surviving | logged | self.knowingly_overwritten, (entity, name, token)
        overridden = {
            e for e, lost in self.server.log if lost.reason is LossReason.DELETE_OVERRIDDEN
        }
        for entity in self.deletes:
            assert is_deleted(self.server.entities[entity]) or entity in overridden, entity

    def teardown(self) -> None:
        if self.devices:
            self.converge()


SyncMachine.TestCase.settings = settings(
    max_examples=400, stateful_step_count=50, deadline=None, derandomize=False
)
TestSyncConvergence = SyncMachine.TestCase
