"""`job_actor` registers a kind's handler; `declare_actors` turns them into Dramatiq actors.

Declaring on an explicit broker (not at import time) lets the worker, `conveyor dev` and
unit tests each bind the same handlers to their own broker.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import dramatiq
import structlog

from shared.db.engine import session_scope
from shared.db.repos import outbox as outbox_repo
from shared.jobs.catalog import KindSpec
from shared.jobs.messages import dead_letter
from shared.jobs.runner import Handler, RunnerDeps, execute
from shared.messaging.contract import JobEnvelope
from shared.messaging.names import REJECT_ACTOR, Pool, queue_name
from shared.messaging.wire_auth import Origin
from shared.metrics import MESSAGES_REJECTED

log = structlog.get_logger("messaging")

_HANDLERS: dict[str, tuple[KindSpec, Handler]] = {}


def job_actor(spec: KindSpec) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _HANDLERS[spec.kind] = (spec, handler)
        return handler

    return register


def registered_kinds() -> list[str]:
    return sorted(_HANDLERS)


def declare_actors(
    broker: dramatiq.Broker, deps: Callable[[], RunnerDeps]
) -> list[dramatiq.Actor[Any, Any]]:
    """One actor per registered kind, plus the reject actor, on `broker`."""
    actors = [_job_actor(broker, spec, handler, deps) for spec, handler in _HANDLERS.values()]
    actors.append(_reject_actor(broker, deps))
    return actors


def _job_actor(
    broker: dramatiq.Broker, spec: KindSpec, handler: Handler, deps: Callable[[], RunnerDeps]
) -> dramatiq.Actor[Any, Any]:
    queue = queue_name(spec.pool)

    def run(
        envelope: dict[str, Any], redelivered: bool = False, origin: dict[str, Any] | None = None
    ) -> None:
        parsed = JobEnvelope.model_validate(envelope)
        # The consumer authenticated the publisher (shared/messaging/wire_auth) and says who.
        source = Origin(**origin) if origin else None
        execute(deps(), spec, handler, parsed, queue=queue, redelivered=redelivered, origin=source)

    run.__name__ = handler.__name__
    declare = dramatiq.actor(
        broker=broker,
        actor_name=spec.kind,
        queue_name=queue,
        time_limit=int(spec.time_limit_s * 1000),
    )
    return declare(run)


def _reject_actor(
    broker: dramatiq.Broker, deps: Callable[[], RunnerDeps]
) -> dramatiq.Actor[Any, Any]:
    def reject(queue: str, reason: str, detail: str, body_b64: str) -> None:
        """Dead-letter a message that cannot run, with its reason (through the outbox)."""
        body = base64.b64decode(body_b64)
        with session_scope(deps().sessions) as session:
            outbox_repo.add_many(
                session, [dead_letter(queue=queue, body=body, reason=reason, detail=detail)]
            )
        MESSAGES_REJECTED.labels(reason).inc()
        log.warning("messaging.message_rejected", queue=queue, reason=reason, detail=detail)

    declare = dramatiq.actor(
        broker=broker, actor_name=REJECT_ACTOR, queue_name=queue_name(Pool.DEFAULT)
    )
    return declare(reject)
