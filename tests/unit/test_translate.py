"""Raw AMQP bodies become Dramatiq messages: a job actor's, or the reject actor's."""

from __future__ import annotations

import base64
import uuid

from shared.messaging.names import REJECT_ACTOR
from shared.messaging.translate import FOREIGN_ID_NAMESPACE, to_dramatiq

KNOWN = {"diag.noop"}


def test_a_valid_envelope_goes_to_its_kind_on_the_consumed_queue() -> None:
    job_id = uuid.uuid4()
    body = f'{{"version":1,"kind":"diag.noop","user_id":"u","job_id":"{job_id}"}}'.encode()
    message = to_dramatiq(body, queue="conveyor.default", redelivered=True, known_kinds=KNOWN)
    assert message["actor_name"] == "diag.noop"
    assert message["queue_name"] == "conveyor.default"
    assert message["kwargs"]["redelivered"] is True
    assert message["kwargs"]["envelope"]["job_id"] == str(job_id)


def test_unknown_kinds_and_garbage_go_to_the_reject_actor_with_the_original_bytes() -> None:
    for body, reason in [
        (b"garbage", "not_json"),
        (b'{"version":1,"kind":"x.y","user_id":"u"}', "unknown_kind"),
    ]:
        message = to_dramatiq(body, queue="conveyor.media", redelivered=False, known_kinds=KNOWN)
        assert message["actor_name"] == REJECT_ACTOR
        assert message["queue_name"] == "conveyor.media"
        assert message["kwargs"]["reason"] == reason
        assert base64.b64decode(message["kwargs"]["body_b64"]) == body


def test_id_less_messages_get_a_stable_id_from_their_amqp_message_id() -> None:
    body = b'{"version":1,"kind":"diag.noop","user_id":"u"}'
    first = to_dramatiq(
        body, queue="q", redelivered=False, known_kinds=KNOWN, amqp_message_id="m-1"
    )
    again = to_dramatiq(
        body, queue="q", redelivered=False, known_kinds=KNOWN, amqp_message_id="m-1"
    )
    expected = str(uuid.uuid5(FOREIGN_ID_NAMESPACE, "m-1"))
    assert (
        first["kwargs"]["envelope"]["job_id"] == again["kwargs"]["envelope"]["job_id"] == expected
    )
    without = to_dramatiq(body, queue="q", redelivered=False, known_kinds=KNOWN)
    assert without["kwargs"]["envelope"]["job_id"] != expected
