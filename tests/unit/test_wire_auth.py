"""Publisher identity and kind authorization (shared/messaging/wire_auth), and the deploy
definitions that create the RabbitMQ users and permissions the code expects."""

from __future__ import annotations

import re

import pytest

from shared.config import Settings
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
from shared.messaging.wire_auth import WireAuth, broker_user, check_kind
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
    with pytest.raises(ValueError, match="may not be service users"):
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
