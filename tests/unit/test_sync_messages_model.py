"""Stateful property test of message sync (docs/sync.md "Messages and channels"): two users
share a channel; the second one leaves and re-joins at random; devices post, edit and delete
messages (their own and others') offline and sync in any order with duplicates and lost
responses. The server model applies the same pure rules as the `device.sync` job —
`messages.check` (who may write), `merge.apply` (LWW + tombstones + conflict log),
`delta.registers_for` (what a device is sent; whole registers after a join).

Checked: every device converges to what its user may see (nothing while outside the channel);
no refused write reaches the server; every accepted write survives, is logged, or was
overwritten knowingly. It found that a leave and a re-join between two syncs of a device must
send a re-joined channel's deleted messages too (the device never dropped them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from workers.sync import hlc as hlc_mod
from workers.sync.delta import registers_for
from workers.sync.entities import ParsedChange
from workers.sync.merge import TOMBSTONE, Change, Lost, State, apply, is_deleted, visible
from workers.sync.messages import MessageScope, check

CHANNEL = "c"
USERS = {"a1": "u1", "a2": "u1", "b1": "u2"}  # device -> user; u2 may leave and re-join
T0 = datetime(2026, 1, 1, tzinfo=UTC)
Batch = list[tuple[str, Change]]


@dataclass
class Device:
    node: str
    user: str
    clock: hlc_mod.Hlc
    wall_ms: int
    replica: dict[str, State] = field(default_factory=dict)
    pending: Batch = field(default_factory=list)
    before: dict[str, State | None] = field(default_factory=dict)  # to undo refused edits
    cursor: datetime | None = None

    def stamp(self) -> hlc_mod.Hlc:
        self.clock = hlc_mod.receive(self.clock, self.wall_ms)
        return self.clock

    def write(self, message: str, change: Change) -> None:
        if message not in self.before:
            self.before[message] = self.replica.get(message)
        local = self.replica.get(message, {})
        self.replica[message], _ = apply(local, change, applied_at=T0, seen_until=None)
        self.pending.append((message, change))


@dataclass
class Answer:
    delta: dict[str, State]
    refused: set[int]
    left: bool  # the channel arrived deleted: drop its messages
    watermark: datetime


@dataclass
class Server:
    messages: dict[str, State] = field(default_factory=dict)
    authors: dict[str, str] = field(default_factory=dict)
    member: dict[str, bool] = field(default_factory=lambda: {"u1": True, "u2": True})
    member_since: dict[str, datetime] = field(default_factory=lambda: {"u1": T0, "u2": T0})
    log: list[Lost] = field(default_factory=list)
    seq: int = 0

    def tick(self) -> datetime:
        self.seq += 1
        return T0 + timedelta(microseconds=self.seq)

    def set_member(self, user: str, live: bool) -> None:
        if self.member[user] != live:
            self.member[user], self.member_since[user] = live, self.tick()

    def sync(self, device: Device, batch: Batch, cursor: datetime | None) -> Answer:
        user, refused = device.user, set()
        for index, (message, change) in enumerate(batch):
            if not self._merge(user, index, message, change, cursor):
                refused.add(index)
        watermark = self.tick()
        joined = cursor is None or self.member_since[user] >= cursor
        delta: dict[str, State] = {}
        for message, state in self.messages.items() if self.member[user] else ():
            changed = joined or any(v.applied_at >= cursor for v in state.values())  # type: ignore[operator]
            whole = joined and cursor is not None
            registers = None
            if changed:
                registers = registers_for(state, device.node, full=cursor is None, whole=whole)
            if registers:
                delta[message] = registers
        return Answer(delta, refused, joined and not self.member[user], watermark)

    def _merge(
        self, user: str, index: int, message: str, change: Change, cursor: datetime | None
    ) -> bool:
        exists = message in self.authors
        row = None
        if exists:
            row = {"author_id": self.authors[message], "channel_id": CHANNEL, "reply_to_id": None}
        scope = MessageScope(
            user,
            frozenset({CHANNEL}) if self.member[user] else frozenset(),
            dict.fromkeys(self.authors, CHANNEL),
        )
        parsed = ParsedChange(
            index, "message", message, change.hlc, dict(change.fields), change.delete
        )
        if check(parsed, row, self.messages.get(message), scope) is not None:
            return False
        if not exists and (change.delete or "channel_id" not in change.fields):
            return False  # unknown_entity / missing_fields
        self.authors.setdefault(message, user)
        state, lost = apply(
            self.messages.get(message, {}), change, applied_at=self.tick(), seen_until=cursor
        )
        self.messages[message] = state
        self.log.extend(lost)
        return True


def merge_registers(local: State, incoming: State) -> State:
    merged = dict(local)
    for name, version in incoming.items():
        if name not in merged or version.hlc > merged[name].hlc:
            merged[name] = version
    return merged


class MessageMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server = Server()
        self.devices: dict[str, Device] = {}
        self.accepted: list[tuple[str, Any]] = []  # (message, body token) the server took
        self.knowingly_overwritten: set[Any] = set()
        self.tokens = 0

    @initialize(offsets=st.lists(st.integers(-5_000, 5_000), min_size=3, max_size=3))
    def start(self, offsets: list[int]) -> None:
        for (node, user), offset in zip(USERS.items(), offsets, strict=True):
            self.devices[node] = Device(
                node, user, hlc_mod.Hlc(0, 0, node), 1_800_000_000_000 + offset
            )

    def _token(self, node: str) -> str:
        self.tokens += 1
        return f"{node}:{self.tokens}"

    @rule(node=st.sampled_from(sorted(USERS)))
    def post(self, node: str) -> None:
        device = self.devices[node]
        message = f"m{self.tokens + 1}"
        body = self._token(node)
        device.write(message, Change(device.stamp(), {"channel_id": CHANNEL, "body": body}))

    @rule(node=st.sampled_from(sorted(USERS)), pick=st.integers(0, 10))
    def edit(self, node: str, pick: int) -> None:
        device = self.devices[node]
        shown = sorted(m for m, s in device.replica.items() if not is_deleted(s))
        if not shown:
            return
        message = shown[pick % len(shown)]
        if "body" in device.replica[message]:
            self.knowingly_overwritten.add(device.replica[message]["body"].value)
        device.write(message, Change(device.stamp(), {"body": self._token(node)}))

    @rule(node=st.sampled_from(sorted(USERS)), pick=st.integers(0, 10))
    def delete(self, node: str, pick: int) -> None:
        device = self.devices[node]
        shown = sorted(m for m, s in device.replica.items() if not is_deleted(s))
        if not shown:
            return
        message = shown[pick % len(shown)]
        state = device.replica[message]
        self.knowingly_overwritten.update(v.value for f, v in state.items() if f != TOMBSTONE)
        device.write(message, Change(device.stamp(), {}, delete=True))

    @rule(live=st.booleans())
    def membership(self, live: bool) -> None:
        self.server.set_member("u2", live)

    @rule(node=st.sampled_from(sorted(USERS)), ms=st.integers(0, 3_000))
    def time_passes(self, node: str, ms: int) -> None:
        self.devices[node].wall_ms += ms

    @rule(node=st.sampled_from(sorted(USERS)), duplicate=st.booleans(), lost=st.booleans())
    def sync(self, node: str, duplicate: bool, lost: bool) -> None:
        device = self.devices[node]
        batch = list(device.pending)
        answer = self.server.sync(device, batch, device.cursor)
        for index, (message, change) in enumerate(batch):
            if index not in answer.refused:
                self.accepted.extend((message, v) for k, v in change.fields.items() if k == "body")
        if duplicate:  # a redelivered job or a client retry: the same batch again
            answer = self.server.sync(device, batch, device.cursor)
        if lost:
            return  # the device keeps its pending changes and cursor and will resend
        for index in sorted(answer.refused, reverse=True):
            message = batch[index][0]
            previous = device.before.get(message)
            if previous is None:
                device.replica.pop(message, None)
            else:
                device.replica[message] = previous
        if answer.left or device.cursor is None:
            device.replica.clear()  # `full_resync` (docs/sync.md): replace the local store
        for message, registers in answer.delta.items():
            device.replica[message] = merge_registers(device.replica.get(message, {}), registers)
            for version in registers.values():
                device.clock = hlc_mod.receive(device.clock, device.wall_ms, version.hlc)
        device.pending, device.before, device.cursor = [], {}, answer.watermark

    @rule()
    def converge(self) -> None:
        for _ in range(2):
            for node in sorted(USERS):
                self.sync(node, duplicate=False, lost=False)
        for device in self.devices.values():
            member = self.server.member[device.user]
            expected = {
                m: visible(s)
                for m, s in self.server.messages.items()
                if member and visible(s) is not None
            }
            seen = {m: visible(s) for m, s in device.replica.items() if visible(s) is not None}
            assert seen == expected, (device.node, member)
        self._only_authors_wrote()
        self._nothing_silently_lost()

    def _only_authors_wrote(self) -> None:
        for message, state in self.server.messages.items():
            writers = {USERS[v.hlc.node] for v in state.values()}
            assert writers == {self.server.authors[message]}, message

    def _nothing_silently_lost(self) -> None:
        surviving = {v for s in self.server.messages.values() for v in (visible(s) or {}).values()}
        logged = {lost.value for lost in self.server.log if lost.field != TOMBSTONE}
        for message, token in self.accepted:
            assert token in surviving | logged | self.knowingly_overwritten, (message, token)

    def teardown(self) -> None:
        if self.devices:
            self.converge()


def test_full_resync_replaces_a_post_deleted_while_its_response_was_lost() -> None:
    """Found by the machine: a device's first sync (a full resync) is accepted but its answer
    lost; another device deletes the message; the resend's full resync holds no deleted
    entities, so only replacing the store (as docs/sync.md tells clients) drops the post."""
    state = MessageMachine()
    state.start(offsets=[0, 0, 0])
    state.post(node="a2")
    state.sync(duplicate=False, lost=True, node="a2")
    state.sync(duplicate=False, lost=False, node="a1")
    state.delete(node="a1", pick=0)
    state.converge()
    assert state.devices["a2"].replica == {}


MessageMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None, derandomize=False
)
TestMessageSync = MessageMachine.TestCase
