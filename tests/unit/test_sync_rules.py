"""The sync pure modules: HLC rules, change validation, cursors, merge edge cases."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.crypto import KeyRing
from workers.sync import cursor as cursor_mod
from workers.sync.batch import ClockRule, parse_batch
from workers.sync.entities import ParsedChange
from workers.sync.hlc import SERVER_NODE, Hlc, parse, receive
from workers.sync.merge import (
    TOMBSTONE,
    Change,
    LossReason,
    Version,
    adopt_server_edits,
    apply,
    is_deleted,
    visible,
)
from workers.sync.messages import MessageScope, check, reply_depth

NOW_MS = 1_800_000_000_000
CLOCK = ClockRule(now_ms=NOW_MS, max_skew_ms=300_000)
T0 = datetime(2027, 1, 1, tzinfo=UTC)
ALL = ("contact", "task", "decision", "setting")
CONTACT = "6f1c2d3e-0000-4000-8000-000000000001"


def test_hlc_orders_by_time_then_counter_then_node() -> None:
    assert Hlc(1, 5, "a") < Hlc(2, 0, "a") < Hlc(2, 1, "a") < Hlc(2, 1, "b")
    assert parse("1800000000000-3", "d") == Hlc(1_800_000_000_000, 3, "d")
    for bad in ("", "12", "1-2-3", "-1-0", "1-999999", "x-1"):
        with pytest.raises(ValueError):
            parse(bad, "d")


def test_hlc_receive_is_later_than_everything_it_saw() -> None:
    local = Hlc(100, 0, "a")
    assert receive(local, 200) == Hlc(200, 0, "a")
    assert receive(local, 50) == Hlc(100, 1, "a")
    assert receive(local, 50, Hlc(300, 7, "b")) == Hlc(300, 8, "a")


def _one(raw: object, enabled: tuple[str, ...] = ALL) -> str:
    accepted, rejected = parse_batch([raw], node="dev", enabled=enabled, clock=CLOCK)
    return "ok" if accepted else rejected[0].code


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ({"type": "contact", "id": CONTACT, "hlc": f"{NOW_MS}-0", "fields": {"name": "A"}}, "ok"),
        ({"type": "contact", "id": CONTACT, "hlc": f"{NOW_MS}-0", "delete": True}, "ok"),
        ({"type": "setting", "id": "theme", "hlc": f"{NOW_MS}-0", "fields": {"value": [1]}}, "ok"),
        ("not an object", "invalid_change"),
        ({"type": "contact", "id": CONTACT, "hlc": f"{NOW_MS}-0", "extra": 1}, "invalid_change"),
        ({"type": "song", "id": CONTACT, "hlc": f"{NOW_MS}-0", "fields": {}}, "unknown_type"),
        ({"type": "contact", "id": "nope", "hlc": f"{NOW_MS}-0", "fields": {}}, "invalid_id"),
        ({"type": "contact", "id": CONTACT, "hlc": "soon", "fields": {"name": "A"}}, "invalid_hlc"),
        ({"type": "contact", "id": CONTACT, "hlc": "5-0", "fields": {"name": "A"}}, "invalid_hlc"),
        (
            {"type": "contact", "id": CONTACT, "hlc": f"{NOW_MS + 301_000}-0", "delete": True},
            "clock_skew",
        ),
        ({"type": "contact", "id": CONTACT, "hlc": f"{NOW_MS}-0", "fields": {}}, "invalid_change"),
        (
            {"type": "contact", "id": CONTACT, "hlc": f"{NOW_MS}-0", "fields": {"age": 3}},
            "unknown_field",
        ),
        (
            {"type": "contact", "id": CONTACT, "hlc": f"{NOW_MS}-0", "fields": {"name": ""}},
            "invalid_value",
        ),
        (
            {"type": "contact", "id": CONTACT, "hlc": f"{NOW_MS}-0", "fields": {"name": "a\x00"}},
            "invalid_value",
        ),
        (
            {"type": "task", "id": CONTACT, "hlc": f"{NOW_MS}-0", "fields": {"status": "maybe"}},
            "invalid_value",
        ),
        (
            {"type": "task", "id": CONTACT, "hlc": f"{NOW_MS}-0", "fields": {"due_at": "monday"}},
            "invalid_value",
        ),
        (
            {"type": "contact", "id": CONTACT, "hlc": f"{NOW_MS}-0", "delete": "yes"},
            "invalid_change",
        ),
    ],
)
def test_each_change_is_validated_on_its_own(raw: object, code: str) -> None:
    assert _one(raw) == code


def test_disabled_types_are_refused_and_times_normalised() -> None:
    raw = {"type": "task", "id": CONTACT, "hlc": f"{NOW_MS}-0", "fields": {"title": "t"}}
    assert _one(raw, enabled=("contact",)) == "type_not_synced"
    raw["fields"] = {"due_at": "2027-01-01T12:00:00+02:00"}
    [change], _ = parse_batch([raw], node="dev", enabled=ALL, clock=CLOCK)
    assert change.fields["due_at"] == "2027-01-01T10:00:00+00:00"


RING = KeyRing.parse(f"k1:{base64.b64encode(b'1' * 32).decode()}")
ROTATED = KeyRing.parse(
    f"k2:{base64.b64encode(b'2' * 32).decode()},k1:{base64.b64encode(b'1' * 32).decode()}"
)
KEYS = cursor_mod.CursorKeys.from_ring(RING)


def _edited(text: str, **changes: object) -> str:
    """The cursor with its body edited and its signature kept (what a tamperer can do)."""
    encoded, _, signature = text.partition(".")
    body = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    raw = json.dumps({**body, **changes}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=") + "." + signature


def test_cursor_round_trip_and_refusals() -> None:
    """Broken on purpose once (verify() returning True for any signature): the edited-cursor
    cases decoded without error and this test failed."""
    issued = cursor_mod.Cursor("u1", T0)
    text = issued.encode(KEYS)
    assert cursor_mod.decode(text, user_id="u1", keys=KEYS) == issued
    micros = int(T0.timestamp() * 1_000_000)
    refused = (
        (text, "u2"),  # another user's
        ("garbage!", "u1"),
        ("e30", "u1"),  # {}: no signature
        (_edited(text, t=micros - 10**12), "u1"),  # an earlier watermark: more data
        (_edited(text, u="u2"), "u2"),  # re-owned
        (text.partition(".")[0] + ".AAAA", "u1"),  # signature replaced
        (text.partition(".")[0], "u1"),  # signature dropped
        (text + "é", "u1"),  # a non-ASCII signature (was a TypeError, i.e. a 500)
        (text.partition(".")[0] + ".\u00e9\u00e9", "u1"),
    )
    for bad, user in refused:
        with pytest.raises(cursor_mod.InvalidCursor):
            cursor_mod.decode(bad, user_id=user, keys=KEYS)
    week = timedelta(days=7)
    assert cursor_mod.needs_full_resync(None, now=T0, retention=week)
    assert cursor_mod.needs_full_resync(issued, now=T0 + 2 * week, retention=week)
    assert not cursor_mod.needs_full_resync(issued, now=T0 + timedelta(days=1), retention=week)


def test_cursors_survive_key_rotation_and_unverifiable_ones_mean_a_full_resync() -> None:
    issued = cursor_mod.Cursor("u1", T0)
    rotated = cursor_mod.CursorKeys.from_ring(ROTATED)
    assert cursor_mod.decode(issued.encode(KEYS), user_id="u1", keys=rotated) == issued
    new = issued.encode(rotated)  # signed by k2 now
    assert json.loads(base64.urlsafe_b64decode(new.partition(".")[0] + "=="))["k"] == "k2"
    assert cursor_mod.decode(new, user_id="u1", keys=KEYS) is None  # k2 unknown: full resync
    legacy = base64.urlsafe_b64encode(b'{"v":1,"u":"u1","t":5}').decode().rstrip("=")
    assert cursor_mod.decode(legacy, user_id="u1", keys=KEYS) is None  # unsigned, pre-v2


def test_a_paged_cursor_round_trips_its_position() -> None:
    resume = cursor_mod.Resume(None, "message", T0, "6f1c2d3e-0000-4000-8000-000000000001")
    issued = cursor_mod.Cursor("u1", T0 + timedelta(seconds=1), resume)
    assert cursor_mod.decode(issued.encode(KEYS), user_id="u1", keys=KEYS) == issued
    week = timedelta(days=7)
    assert not cursor_mod.needs_full_resync(issued, now=T0 + timedelta(days=6), retention=week)
    # A full resync paged so slowly that its final watermark is already past retention
    # starts over (its last page's cursor could not be used for a delta anyway).
    assert cursor_mod.needs_full_resync(issued, now=T0 + 2 * week, retention=week)
    delta_page = cursor_mod.Cursor("u1", T0, cursor_mod.Resume(T0, "task", T0, "k"))
    assert cursor_mod.needs_full_resync(delta_page, now=T0 + 2 * week, retention=week)


def _v(ms: int, node: str, value: object = "x") -> Version:
    return Version(Hlc(ms, 0, node), value, T0)


def test_delete_beats_older_edits_and_loses_to_newer_ones() -> None:
    state = {"name": _v(10, "a", "Ada")}
    deleted, lost = apply(
        state, Change(Hlc(20, 0, "b"), {}, delete=True), applied_at=T0, seen_until=None
    )
    assert is_deleted(deleted) and [x.reason for x in lost] == [LossReason.HIDDEN_BY_DELETE]
    older, lost = apply(
        deleted, Change(Hlc(15, 0, "a"), {"name": "Bo"}), applied_at=T0, seen_until=None
    )
    assert is_deleted(older) and [x.value for x in lost] == ["Bo"]
    newer, lost = apply(
        deleted, Change(Hlc(25, 0, "a"), {"name": "Cy"}), applied_at=T0, seen_until=None
    )
    assert visible(newer) == {"name": "Cy"}
    assert [x.reason for x in lost] == [LossReason.DELETE_OVERRIDDEN]


def test_ties_on_time_are_broken_by_device_id() -> None:
    state = {"name": _v(10, "b", "from b")}
    merged, lost = apply(
        state, Change(Hlc(10, 0, "a"), {"name": "from a"}), applied_at=T0, seen_until=None
    )
    assert visible(merged) == {"name": "from b"} and lost[0].value == "from a"


def test_duplicates_change_nothing() -> None:
    change = Change(Hlc(10, 0, "a"), {"name": "Ada"})
    once, _ = apply({}, change, applied_at=T0, seen_until=None)
    twice, lost = apply(once, change, applied_at=T0 + timedelta(seconds=1), seen_until=None)
    assert twice == once and lost == []


def test_server_edits_get_server_timestamps_later_than_what_they_overwrote() -> None:
    state = {"name": _v(5_000, "a", "Ada")}
    adopted = adopt_server_edits(
        state, {"name": "Ada L."}, row_deleted=False, edited_ms=4_000, applied_at=T0
    )
    assert adopted is not None and adopted["name"].hlc == Hlc(5_000, 1, SERVER_NODE)
    assert (
        adopt_server_edits(state, {"name": "Ada"}, row_deleted=False, edited_ms=1, applied_at=T0)
        is None
    )
    gone = adopt_server_edits(
        state, {"name": "Ada"}, row_deleted=True, edited_ms=9_000, applied_at=T0
    )
    assert gone is not None and is_deleted(gone) and gone[TOMBSTONE].hlc.ms == 9_000
    restored = adopt_server_edits(
        gone, {"name": "Ada"}, row_deleted=False, edited_ms=9_500, applied_at=T0
    )
    assert restored is not None and visible(restored) == {"name": "Ada"}


def test_api_types_match_the_synced_types() -> None:
    from typing import get_args

    from shared.db.models.sync import SYNC_TYPES
    from workers.ingress.schemas_devices import SyncType
    from workers.sync.entities import ENTITY_TYPES

    assert get_args(SyncType) == SYNC_TYPES == tuple(ENTITY_TYPES)


ALICE, BOB = "a11ce000-0000-4000-8000-000000000001", "b0b00000-0000-4000-8000-000000000002"
CHAN, OTHER = "c0000000-0000-4000-8000-000000000003", "c0000000-0000-4000-8000-000000000004"
MSG = "d0000000-0000-4000-8000-000000000005"


def _message(fields: dict[str, object], *, delete: bool = False) -> ParsedChange:
    return ParsedChange(0, "message", MSG, Hlc(NOW_MS, 0, "dev"), dict(fields), delete)


@pytest.mark.parametrize(
    ("user", "member_of", "row_author", "fields", "delete", "code"),
    [
        (ALICE, {CHAN}, ALICE, {"body": "edit"}, False, None),
        (ALICE, {CHAN}, ALICE, {}, True, None),
        (BOB, {CHAN}, ALICE, {"body": "edit"}, False, "not_author"),
        (BOB, {CHAN}, ALICE, {}, True, "not_author"),
        (BOB, set(), ALICE, {"body": "edit"}, False, "unknown_entity"),  # invisible to bob
        (ALICE, set(), ALICE, {"body": "edit"}, False, "not_a_member"),  # she left
        (ALICE, {CHAN}, ALICE, {"channel_id": OTHER}, False, "immutable_field"),
        (ALICE, {CHAN}, ALICE, {"channel_id": CHAN, "body": "same"}, False, None),
        (ALICE, {CHAN}, None, {"channel_id": CHAN, "body": "new"}, False, None),
        (ALICE, {CHAN}, None, {"channel_id": OTHER, "body": "new"}, False, "not_a_member"),
        (
            ALICE,
            {CHAN},
            None,
            {"channel_id": CHAN, "reply_to_id": MSG[:-1] + "9"},
            False,
            "invalid_value",
        ),
    ],
)
def test_who_may_write_a_message(
    user: str,
    member_of: set[str],
    row_author: str | None,
    fields: dict[str, object],
    delete: bool,
    code: str | None,
) -> None:
    row = None
    if row_author is not None:
        row = {"author_id": row_author, "channel_id": CHAN, "reply_to_id": None}
    scope = MessageScope(user, frozenset(member_of), {})
    refused = check(_message(fields, delete=delete), row, None, scope)
    assert (refused.code if refused else None) == code


def test_replies_are_written_after_their_targets_and_plans_follow_cursors() -> None:
    a, b, c = (
        ParsedChange(0, "message", i, Hlc(NOW_MS, 0, "d"), f, False)
        for i, f in (
            ("a", {"channel_id": CHAN}),
            ("b", {"channel_id": CHAN, "reply_to_id": "a"}),
            ("c", {"channel_id": CHAN, "reply_to_id": "b"}),
        )
    )
    assert reply_depth([c, b, a]) == {"b": 1, "c": 2}
    week = timedelta(days=7)
    fresh = cursor_mod.Cursor("u1", T0)
    assert cursor_mod.plan(None, now=T0, retention=week).full_resync
    assert cursor_mod.plan(fresh, now=T0, retention=week).since == T0
    page = cursor_mod.Resume(T0, "task", T0, "k")
    paged = cursor_mod.plan(cursor_mod.Cursor("u1", T0 + week, page), now=T0, retention=week)
    assert (paged.since, paged.start, paged.watermark) == (T0, page, T0 + week)
    stale = cursor_mod.plan(cursor_mod.Cursor("u1", T0, page), now=T0 + 2 * week, retention=week)
    assert stale.full_resync and stale.start is None  # a stale paged delta starts over
