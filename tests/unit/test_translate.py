"""Raw AMQP bodies become Dramatiq messages: a job actor's, or the reject actor's."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from shared.messaging.names import REJECT_ACTOR
from shared.messaging.translate import FOREIGN_ID_NAMESPACE, foreign_job_id, to_dramatiq
from shared.messaging.wire_auth import WireAuth

KNOWN = {"diag.noop", "file.delete", REJECT_ACTOR}
AUTH = WireAuth(frozenset({"conveyor"}), {"crm-svc": "tenant-a"})


def translate(body: bytes, *, publisher: str | None = "conveyor", **kw: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"queue": "q", "redelivered": False, **kw}
    return to_dramatiq(body, known_kinds=KNOWN, auth=AUTH, publisher=publisher, **options)


def test_a_valid_envelope_goes_to_its_kind_on_the_consumed_queue() -> None:
    job_id = uuid.uuid4()
    body = f'{{"version":1,"kind":"diag.noop","user_id":"u","job_id":"{job_id}"}}'.encode()
    message = translate(body, queue="conveyor.default", redelivered=True)
    assert message["actor_name"] == "diag.noop"
    assert message["queue_name"] == "conveyor.default"
    assert message["kwargs"]["redelivered"] is True
    assert message["kwargs"]["envelope"]["job_id"] == str(job_id)
    assert message["kwargs"]["origin"] == {
        "publisher": "conveyor",
        "tenant_id": "default",
        "service": True,
    }


def test_unknown_kinds_and_garbage_go_to_the_reject_actor_with_the_original_bytes() -> None:
    for body, reason in [
        (b"garbage", "not_json"),
        (b'{"version":1,"kind":"x.y","user_id":"u"}', "unknown_kind"),
        # The reject actor is an actor, not a kind: nobody may address it.
        (b'{"version":1,"kind":"conveyor.reject","user_id":"u"}', "unknown_kind"),
    ]:
        message = translate(body, queue="conveyor.media")
        assert message["actor_name"] == REJECT_ACTOR
        assert message["queue_name"] == "conveyor.media"
        assert message["kwargs"]["reason"] == reason
        assert base64.b64decode(message["kwargs"]["body_b64"]) == body


def test_id_less_messages_get_a_stable_id_from_their_amqp_message_id() -> None:
    body = b'{"version":1,"kind":"diag.noop","user_id":"u"}'
    first = translate(body, amqp_message_id="m-1")
    again = translate(body, amqp_message_id="m-1")
    expected = str(uuid.uuid5(FOREIGN_ID_NAMESPACE, "default\nconveyor\nm-1"))
    assert (
        first["kwargs"]["envelope"]["job_id"] == again["kwargs"]["envelope"]["job_id"] == expected
    )
    without = translate(body)
    assert without["kwargs"]["envelope"]["job_id"] != expected


def test_the_same_message_id_from_two_publishers_is_two_jobs() -> None:
    """Ids are scoped by (tenant, publisher): one publisher's "order-42" cannot name another
    publisher's job. Broken on purpose once (uuid5 of the message id alone): equal ids."""
    body = b'{"version":1,"kind":"diag.noop","user_id":"u"}'
    ours = translate(body, publisher="conveyor", amqp_message_id="order-42")
    theirs = translate(body, publisher="crm-svc", amqp_message_id="order-42")
    ids = {m["kwargs"]["envelope"]["job_id"] for m in (ours, theirs)}
    assert ids == {
        str(foreign_job_id("default", "conveyor", "order-42")),
        str(foreign_job_id("tenant-a", "crm-svc", "order-42")),
    }


@pytest.mark.parametrize(
    ("publisher", "body", "reason"),
    [
        # Checked before parsing: an unknown party's bytes are never even parsed.
        (None, b'{"version":1,"kind":"diag.noop","user_id":"u"}', "unauthenticated_publisher"),
        ("", b"garbage", "unauthenticated_publisher"),
        ("stranger", b"garbage", "unauthenticated_publisher"),
        # The reproduction: a foreign publisher sends an internal kind.
        ("crm-svc", b'{"version":1,"kind":"file.delete","user_id":"v"}', "forbidden_kind"),
        ("crm-svc", b'{"version":1,"kind":"x.y","user_id":"v"}', "unknown_kind"),
    ],
)
def test_unauthenticated_and_unauthorized_messages_are_rejected_with_a_reason(
    publisher: str | None, body: bytes, reason: str
) -> None:
    """Broken on purpose once (authenticate() returned a service origin for everyone):
    every case here failed."""
    message = translate(body, publisher=publisher)
    assert message["actor_name"] == REJECT_ACTOR
    assert message["kwargs"]["reason"] == reason
    assert base64.b64decode(message["kwargs"]["body_b64"]) == body


def test_foreign_publishers_run_public_kinds_under_their_tenant() -> None:
    body = b'{"version":1,"kind":"diag.noop","user_id":"u"}'
    message = translate(body, publisher="crm-svc")
    assert message["actor_name"] == "diag.noop"
    assert message["kwargs"]["origin"] == {
        "publisher": "crm-svc",
        "tenant_id": "tenant-a",
        "service": False,
    }


def test_service_users_may_send_internal_kinds() -> None:
    body = b'{"version":1,"kind":"file.delete","user_id":"v","payload":{"file_id":"%s"}}' % (
        str(uuid.uuid4()).encode()
    )
    assert translate(body, publisher="conveyor")["actor_name"] == "file.delete"


def test_a_foreign_job_belongs_to_its_publishers_tenant_never_the_bodys() -> None:
    """Broken on purpose once (the envelope's tenant_id kept as published): a registered
    publisher of tenant-a ran its job under tenant-b, and this failed."""
    body = b'{"version":1,"kind":"diag.noop","user_id":"u"}'
    assert translate(body, publisher="crm-svc")["kwargs"]["envelope"]["tenant_id"] == "tenant-a"
    same = b'{"version":1,"kind":"diag.noop","user_id":"u","tenant_id":"tenant-a"}'
    assert translate(same, publisher="crm-svc")["kwargs"]["envelope"]["tenant_id"] == "tenant-a"
    other = b'{"version":1,"kind":"diag.noop","user_id":"u","tenant_id":"tenant-b"}'
    rejected = translate(other, publisher="crm-svc")
    assert rejected["actor_name"] == REJECT_ACTOR
    assert rejected["kwargs"]["reason"] == "forbidden_tenant"


def test_service_users_name_the_tenant_in_the_envelope() -> None:
    body = b'{"version":1,"kind":"diag.noop","user_id":"u","tenant_id":"tenant-b"}'
    assert translate(body, publisher="conveyor")["kwargs"]["envelope"]["tenant_id"] == "tenant-b"
    plain = b'{"version":1,"kind":"diag.noop","user_id":"u"}'
    assert translate(plain, publisher="conveyor")["kwargs"]["envelope"]["tenant_id"] == "default"
