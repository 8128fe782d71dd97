"""Publisher identity and kind authorization (shared/messaging/wire_auth), and the deploy
definitions that create the RabbitMQ users and permissions the code expects."""

from __future__ import annotations

import base64
import re

import pytest

from shared.config import Settings
from shared.crypto import CryptoError, KeyRing, sign, verify
from shared.errors import InvalidMessage
from shared.jobs.catalog import all_specs
from shared.messaging.names import (
    EVENTS_EXCHANGE,
    JOBS_EXCHANGE,
    UNROUTED_EXCHANGE,
    Pool,
    dead_letter_queue,
    queue_name,
)
from shared.messaging.wire_auth import Signing, WireAuth, broker_user, check_kind
from tests.support.wire import FOREIGN_USER, SERVICE_USER, definitions, permissions_of


@pytest.mark.parametrize(
    ("url", "user"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/vh", "guest"),
        ("amqp://conveyor:s3cr%40t@rabbitmq:5672/%2F", "conveyor"),
        ("amqp://svc%2Bjobs:x@host/", "svc+jobs"),
        ("amqp://rabbitmq:5672/", "guest"),  # no credentials: RabbitMQ's default user
    ],
)
def test_the_service_user_is_the_broker_url_user(url: str, user: str) -> None:
    assert broker_user(url) == user


def test_service_users_default_to_the_broker_url_and_may_be_listed() -> None:
    assert WireAuth.from_settings("amqp://svc:x@h/", [], {}).service_users == {"svc"}
    listed = WireAuth.from_settings("amqp://svc:x@h/", ["relay", "worker"], {})
    assert listed.service_users == {"relay", "worker"}


def test_a_publisher_cannot_also_be_a_service_user() -> None:
    with pytest.raises(ValueError, match="more than one role"):
        WireAuth.from_settings("amqp://svc:x@h/", [], {"svc": "default"})


def test_settings_read_the_publisher_registry_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_WIRE_PUBLISHERS", '{"crm-svc": "default"}')
    monkeypatch.setenv("CONVEYOR_WIRE_SERVICE_USERS", '["conveyor"]')
    settings = Settings()
    assert settings.wire_publishers == {"crm-svc": "default"}
    assert settings.wire_service_users == ["conveyor"]


def test_origins_and_refusals() -> None:
    auth = WireAuth(frozenset({"conveyor"}), {"crm-svc": "t1"})
    service, foreign = auth.authenticate("conveyor"), auth.authenticate("crm-svc")
    assert (service.service, service.tenant_id) == (True, "default")
    assert (foreign.service, foreign.tenant_id) == (False, "t1")
    for who in (None, "", "other"):
        with pytest.raises(InvalidMessage) as caught:
            auth.authenticate(who)
        assert caught.value.code == "unauthenticated_publisher"
    check_kind(service, "file.delete", public=False)
    check_kind(foreign, "diag.noop", public=True)
    with pytest.raises(InvalidMessage) as caught:
        check_kind(foreign, "file.delete", public=False)
    assert caught.value.code == "forbidden_kind"


# --- deploy/rabbitmq/definitions.json -------------------------------------------------


def _matches(pattern: str, name: str) -> bool:
    """RabbitMQ permission regexes are unanchored searches (re:run), like re.search."""
    return re.search(pattern, name) is not None


def _topology_names() -> tuple[list[str], list[str]]:
    queues = [queue_name(p) for p in Pool]
    queues += [dead_letter_queue(q) for q in queues] + [f"{q}.DQ" for q in queues]
    return [JOBS_EXCHANGE, UNROUTED_EXCHANGE, EVENTS_EXCHANGE], queues


def test_definitions_give_the_service_user_the_whole_topology() -> None:
    configure, write, read = permissions_of(SERVICE_USER)
    exchanges, queues = _topology_names()
    for name in exchanges + queues:
        assert _matches(configure, name), name  # `conveyor migrate` declares them
        assert _matches(write, name), name
    for name in queues:
        assert _matches(read, name), name
    assert _matches(write, "amq.default")  # dead letters go through the default exchange


def test_definitions_let_foreign_publishers_write_the_jobs_exchange_only() -> None:
    """Broken on purpose once (write ".*"): failed on conveyor.events and the queues."""
    configure, write, read = permissions_of(FOREIGN_USER)
    exchanges, queues = _topology_names()
    assert _matches(write, JOBS_EXCHANGE)
    for name in [*exchanges, *queues, "amq.default", "amq.topic"]:
        if name != JOBS_EXCHANGE:
            assert not _matches(write, name), name
        assert not _matches(configure, name), name
        assert not _matches(read, name), name


def test_definitions_grant_no_one_impersonation_and_cover_every_user() -> None:
    data = definitions()
    users = {u["name"]: u for u in data["users"]}
    # `impersonator` lets a user set any user_id: it would void publisher identity.
    assert all("impersonator" not in u["tags"] for u in users.values())
    assert {p["user"] for p in data["permissions"]} == set(users)
    assert {p["vhost"] for p in data["permissions"]} <= {v["name"] for v in data["vhosts"]}
    assert all(u["password_hash"].startswith("REPLACE_ME") for u in users.values())


def test_every_kind_a_foreign_publisher_may_send_is_public() -> None:
    """The catalogue decides; this pins what it says today, so a kind turning public is a
    reviewed change (docs/wire-format.md lists the public kinds)."""
    assert [s.kind for s in all_specs() if s.public] == ["diag.noop"]


# --- signed envelopes: publishers behind shared credentials --------------------------

KEY_A, KEY_B = base64.b64encode(b"a" * 32).decode(), base64.b64encode(b"b" * 32).decode()
RING = KeyRing.parse(f"crmA:{KEY_A},crmB:{KEY_B}")


def signed_auth() -> WireAuth:
    signing = Signing(frozenset({"shared"}), RING, {"crmA": "t-a", "crmB": "t-b"})
    return WireAuth.from_settings("amqp://svc:x@h/", [], {"crm-svc": "default"}, signing)


def test_signatures_name_the_signing_key_and_refuse_any_change() -> None:
    body = b'{"version":1}'
    assert verify(RING, sign(RING, body, kid="crmB"), body) == "crmB"
    signature = sign(RING, body)
    for bad_body, bad_signature in [
        (body + b" ", signature),  # body changed
        (body, signature.replace("crmA", "crmB")),  # signed by A, claims B
        (body, "v1:nope:" + signature.rsplit(":", 1)[1]),  # unknown key id
        (body, "v2" + signature[2:]),
        (body, "v1:crmA:not base64!"),
        (body, ""),
    ]:
        with pytest.raises(CryptoError):
            verify(RING, bad_signature, bad_body)


def test_shared_publishers_must_sign_and_the_key_picks_the_tenant() -> None:
    """Broken on purpose once (Signing.origin skipped verify): the forged cases passed."""
    auth, body = signed_auth(), b'{"version":1,"kind":"diag.noop","user_id":"u"}'
    origin = auth.authenticate("shared", signature=sign(RING, body, kid="crmB"), body=body)
    assert (origin.publisher, origin.tenant_id, origin.service) == ("shared/crmB", "t-b", False)
    other_ring = KeyRing.parse(f"crmA:{base64.b64encode(b'x' * 32).decode()}")
    for signature in [None, sign(other_ring, body), sign(RING, b"other body")]:
        with pytest.raises(InvalidMessage) as caught:
            auth.authenticate("shared", signature=signature, body=body)
        assert caught.value.code == "bad_signature"
    # Unsigned publishers with their own credentials are unaffected.
    assert auth.authenticate("crm-svc").tenant_id == "default"


def test_a_signing_key_without_a_tenant_is_refused() -> None:
    signing = Signing(frozenset({"shared"}), RING, {"crmA": "t-a"})
    auth = WireAuth(frozenset({"svc"}), {}, signing)
    body = b"{}"
    with pytest.raises(InvalidMessage) as caught:
        auth.authenticate("shared", signature=sign(RING, body, kid="crmB"), body=body)
    assert caught.value.code == "bad_signature"


def test_settings_build_the_signing_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        broker_url="amqp://svc:x@h/",
        wire_shared_publishers=["shared"],
        wire_signing_keys=f"crmA:{KEY_A}",  # type: ignore[arg-type]
        wire_signers={"crmA": "default"},
    )
    auth = settings.wire_auth()
    assert auth.service_users == {"svc"} and auth.signing is not None
    assert auth.signing.users == {"shared"}
    with pytest.raises(ValueError, match="SIGNING_KEYS"):
        Settings(wire_shared_publishers=["shared"]).wire_auth()
    with pytest.raises(ValueError, match="more than one role"):
        Settings(
            broker_url="amqp://shared:x@h/",
            wire_shared_publishers=["shared"],
            wire_signing_keys=f"crmA:{KEY_A}",  # type: ignore[arg-type]
        ).wire_auth()
