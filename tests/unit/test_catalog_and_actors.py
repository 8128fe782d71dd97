"""Kinds, handlers and actors line up; the StubBroker path routes like RabbitMQ does."""

from __future__ import annotations

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from shared.db.repos.outbox import PendingMessage
from shared.errors import UnknownKind
from shared.jobs.catalog import all_specs, get_spec
from shared.jobs.messages import job_message
from shared.messaging.actors import declare_actors, registered_kinds
from shared.messaging.broker import conveyor_middleware
from shared.messaging.names import REJECT_ACTOR, Pool, Priority
from shared.messaging.publisher import StubPublisher
from workers.registry import import_actor_modules


def test_every_kind_in_the_catalogue_has_a_handler() -> None:
    import_actor_modules()
    assert registered_kinds() == [s.kind for s in all_specs()]
    # Test-only kinds (test_time_limits.py) are registered inside a block and removed after:
    # whatever ran before, the catalogue is the product's.
    assert not [s.kind for s in all_specs() if s.kind.startswith("test.")]
    for spec in all_specs():
        assert spec.pool in Pool
        assert spec.max_attempts >= 1 and spec.time_limit_s > 0


def test_unknown_kind_is_a_permanent_error() -> None:
    with pytest.raises(UnknownKind):
        get_spec("nope.nope")


@pytest.fixture
def stub_broker() -> StubBroker:
    broker = StubBroker(middleware=conveyor_middleware())
    import_actor_modules()
    declare_actors(broker, lambda: pytest.fail("no job may run in this test"))
    return broker


def test_actors_carry_queue_and_time_limit_from_the_catalogue(stub_broker: StubBroker) -> None:
    actor = stub_broker.get_actor("diag.noop")
    assert actor.queue_name == "conveyor.default"
    assert actor.options["time_limit"] == int(get_spec("diag.noop").time_limit_s * 1000)
    assert stub_broker.get_actor(REJECT_ACTOR).queue_name == "conveyor.default"


def test_stub_publisher_routes_jobs_and_rejects_unknown_kinds(stub_broker: StubBroker) -> None:
    import uuid

    row = job_message(
        job_id=uuid.uuid4(), kind="diag.noop", user_id="u", payload={}, priority=Priority.NORMAL
    )
    good = PendingMessage(1, row["exchange"], row["routing_key"], row["body"], None, 5)
    bad = PendingMessage(
        2, "conveyor.jobs", "x.y", b'{"version":1,"kind":"x.y","user_id":"u"}', None, 0
    )
    event = PendingMessage(3, "conveyor.events", "job.diag.noop.succeeded", b"{}", None, 0)
    StubPublisher(stub_broker).publish([good, bad, event])
    queued = [dramatiq.Message.decode(m) for m in stub_broker.queues["conveyor.default"].queue]
    assert [m.actor_name for m in queued] == ["diag.noop", REJECT_ACTOR]
    assert queued[1].kwargs["reason"] == "unknown_kind"
