"""Device sync of channels and messages (docs/sync.md "Messages and channels") through real
ingress and `sync` worker processes on real PostgreSQL, RabbitMQ and S3: several users'
devices (scripted HTTP clients) share a channel, edit their own messages offline, and converge;
membership changes make a channel's messages arrive and go."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from shared.db.engine import session_scope
from shared.db.models import Channel, ChannelMember
from shared.embedded import EmbeddedS3
from tests.support.stack import Stack
from tests.support.sync_client import (
    conflicts,
    ident,
    new_device,
    new_user,
    server_view,
    start_sync_stack,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sync_stack(tmp_path_factory: pytest.TempPathFactory, s3_server: EmbeddedS3) -> Iterator[Stack]:
    stack = start_sync_stack(tmp_path_factory.mktemp("logs"), s3_server)
    yield stack
    stack.close()


def new_channel(stack: Stack, owner: str, *members: str) -> str:
    channel = uuid.uuid4()
    with session_scope(stack.sessions) as session:
        session.add(Channel(id=channel, owner_id=uuid.UUID(owner), name="general", kind="group"))
        session.flush()
        session.add(ChannelMember(channel_id=channel, user_id=uuid.UUID(owner), role="owner"))
        for member in members:
            session.add(ChannelMember(channel_id=channel, user_id=uuid.UUID(member), role="member"))
    return str(channel)


def set_membership(stack: Stack, channel: str, user: str, *, live: bool) -> None:
    sql = "UPDATE channel_members SET deleted_at = {} WHERE channel_id = :c AND user_id = :u"
    with session_scope(stack.sessions) as session:
        session.execute(text(sql.format("NULL" if live else "now()")), {"c": channel, "u": user})


def messages(view: dict[tuple[str, str], Any]) -> dict[tuple[str, str], Any]:
    return {k: v for k, v in view.items() if k[0] == "message"}


def codes(result: dict[str, object]) -> list[str]:
    return [r["code"] for r in result["rejected"]]  # type: ignore[attr-defined, index]


def test_members_devices_converge_on_messages_and_authors_alone_edit(sync_stack: Stack) -> None:
    alice, bob = new_user(sync_stack), new_user(sync_stack)
    channel = new_channel(sync_stack, alice, bob)
    phone, laptop = new_device(sync_stack, alice, "phone"), new_device(sync_stack, alice, "laptop")
    bobs = new_device(sync_stack, bob, "bob's phone")
    for device in (phone, laptop, bobs):
        device.sync()
    assert phone.visible()[("channel", channel)]["role"] == "owner"
    assert bobs.visible()[("channel", channel)]["role"] == "member"

    hello, reply = ident(), ident()
    phone.edit("message", hello, channel_id=channel, body="hello")
    phone.sync()
    bobs.edit("message", reply, channel_id=channel, body="hi!", reply_to_id=hello)
    assert bobs.sync()["rejected"] == []
    for device in (laptop, phone, bobs):
        device.sync()
    expected = server_view(sync_stack, alice)
    assert expected[("message", reply)]["reply_to_id"] == hello
    assert phone.visible() == laptop.visible() == expected
    assert bobs.visible() == server_view(sync_stack, bob)
    assert messages(bobs.visible()) == messages(expected)  # same channel, same messages

    # Offline: both of alice's devices edit her message (the later one wins, the other is
    # logged); bob tries to edit and delete it, and to post where he is no member.
    laptop.edit("message", hello, body="hello, world")
    phone.edit("message", hello, body="hello everyone")
    # Concurrent: whichever stamp is later (ms, counter, device id) wins, the other is logged.
    stamps = {d.replica[("message", hello)].fields["body"] for d in (laptop, phone)}
    (won, _), (lost_body, _) = sorted(stamps, key=lambda register: register[1], reverse=True)
    bobs.edit("message", hello, body="bob was here")
    bobs.delete("message", hello)
    bobs.edit("message", ident(), channel_id=new_channel(sync_stack, alice), body="sneaky")
    bobs.edit("message", reply, channel_id=new_channel(sync_stack, bob))  # move his own reply
    assert codes(bobs.sync()) == ["not_author", "not_author", "not_a_member", "immutable_field"]
    laptop.sync()
    phone.sync()
    for device in (laptop, bobs):
        device.sync()
    expected = server_view(sync_stack, alice)
    assert expected[("message", hello)]["body"] == won
    assert phone.visible() == laptop.visible() == expected
    assert messages(bobs.visible()) == messages(expected)
    [lost] = conflicts(sync_stack, alice)
    assert (lost["type"], lost["field"], lost["lost_value"]) == ("message", "body", lost_body)
    assert conflicts(sync_stack, bob) == []
    with session_scope(sync_stack.sessions) as session:
        edited = session.execute(text("SELECT edited_at FROM messages WHERE id = :i"), {"i": hello})
        assert edited.scalar_one() is not None

    phone.delete("message", hello)  # the author deletes: a tombstone for every member
    phone.sync()
    bobs.sync()
    assert ("message", hello) not in bobs.visible()
    assert ("message", reply) in bobs.visible()


def test_leaving_drops_a_channels_messages_and_rejoining_brings_them_back(
    sync_stack: Stack,
) -> None:
    alice, bob = new_user(sync_stack), new_user(sync_stack)
    channel = new_channel(sync_stack, alice, bob)
    alices, bobs = new_device(sync_stack, alice), new_device(sync_stack, bob)
    bobs.sync()
    mine, theirs = ident(), ident()
    bobs.edit("message", mine, channel_id=channel, body="bob's own")
    bobs.sync()
    alices.sync()
    alices.edit("message", theirs, channel_id=channel, body="alice's")
    alices.sync()
    bobs.sync()
    assert {k[1] for k in bobs.visible() if k[0] == "message"} == {mine, theirs}

    set_membership(sync_stack, channel, bob, live=False)
    result = bobs.sync()
    [gone] = [e for e in result["delta"] if e["type"] == "channel"]
    assert gone["deleted"] is True
    assert bobs.visible() == server_view(sync_stack, bob) == {}
    late = ident()
    bobs.edit("message", late, channel_id=channel, body="posted after leaving")
    assert codes(bobs.sync()) == ["not_a_member"]
    alices.edit("message", theirs, body="said while bob was away")
    alices.sync()

    set_membership(sync_stack, channel, bob, live=True)
    result = bobs.sync()
    back = {e["id"] for e in result["delta"] if e["type"] == "message"}
    assert back == {mine, theirs}  # his own message too: the device dropped it on leaving
    assert bobs.visible() == server_view(sync_stack, bob)
    assert bobs.visible()[("message", theirs)]["body"] == "said while bob was away"
    assert bobs.visible()[("message", mine)]["body"] == "bob's own"


def test_channels_are_read_only_and_messages_are_validated(sync_stack: Stack) -> None:
    alice = new_user(sync_stack)
    channel = new_channel(sync_stack, alice)
    phone = new_device(sync_stack, alice)
    phone.sync()
    now = phone._stamp().wire()
    phone.pending = [
        {"type": "channel", "id": channel, "hlc": now, "fields": {"name": "renamed"}},
        {"type": "message", "id": ident(), "hlc": now, "fields": {"body": "no channel"}},
        {"type": "message", "id": ident(), "hlc": now, "fields": {"channel_id": channel}},
        {"type": "message", "id": ident(), "hlc": now, "fields": {"channel_id": "x", "body": "b"}},
        {
            "type": "message",
            "id": ident(),
            "hlc": now,
            "fields": {"channel_id": channel, "body": ""},
        },
        {
            "type": "message",
            "id": ident(),
            "hlc": now,
            "fields": {"channel_id": channel, "body": "reply", "reply_to_id": ident()},
        },
        {
            "type": "message",
            "id": ident(),
            "hlc": now,
            "fields": {"channel_id": channel, "body": "ok"},
        },
    ]
    result = phone.sync()
    assert [(r["index"], r["code"]) for r in result["rejected"]] == [
        (0, "read_only_type"),
        (1, "missing_fields"),
        (2, "missing_fields"),
        (3, "invalid_value"),
        (4, "invalid_value"),
        (5, "invalid_value"),
    ]
    assert result["applied"] == 1
    assert server_view(sync_stack, alice)[("channel", channel)]["name"] == "general"
