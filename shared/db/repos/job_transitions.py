"""The hot transitions' SQL: claim / take over, and succeed.

Each statement writes the state change (and, for succeed, the completion event's outbox row)
for a whole batch at once. The happy path stores no `job_events` rows: the claim's history is
the row's `started_at` + `attempt`, the success's its `finished_at` (view `job_history`); a
take-over stores its row and the replaced attempt's claim in the same statement. The
group-commit writer runs them on its own connections and the per-job path runs the very same
text inside the handler's session with one-element batches, so both paths obey one set of rules.

Claim rules (see docs/lifecycle.md):
- `queued` → `running` when due (`run_at <= clock_timestamp()`, the database clock; never
  early) and no
  cancel was requested;
- `running` → `running` (take over, a new attempt) only from a dead owner: its heartbeat is
  older than `stale_s`, or the owner is this very worker process, which knows it is not
  running the job (callers never claim a job they hold, see RunningJobs.reserve).
Rows are locked in id order, so two batches never deadlock on each other.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

CLAIM_SQL = """
WITH wanted AS (
    -- A delivery claims only a job of its own kind and tenant: an envelope that names
    -- another tenant's (or kind's) job id claims nothing (the runner dead-letters it).
    SELECT * FROM jsonb_to_recordset(CAST(%(wanted)s AS jsonb)) AS w(id uuid, kind text,
                                                                      tenant_id text)
), current AS (
    SELECT j.id, j.state, j.attempt, j.started_at FROM jobs AS j
    JOIN wanted AS w ON w.id = j.id AND w.kind = j.kind AND w.tenant_id = j.tenant_id
    -- The planner takes a recordset for 100 rows and would hash the whole table; an id
    -- array makes it look the batch up by primary key (tests/integration/test_hot_plans.py).
    WHERE j.id = ANY(ARRAY(SELECT id FROM wanted))
    ORDER BY j.id
    FOR UPDATE OF j
), claimed AS (
    UPDATE jobs AS j
    SET state = 'running', attempt = j.attempt + 1, worker = %(worker)s, started_at = now(),
        heartbeat_at = now(), updated_at = now()
    FROM current AS c
    WHERE j.id = c.id AND NOT j.cancel_requested AND (
        (c.state = 'queued' AND j.run_at <= clock_timestamp())
        OR (c.state = 'running' AND (
            j.heartbeat_at < now() - make_interval(secs => %(stale_s)s)
            OR j.worker = %(worker)s)))
    RETURNING j.id, j.attempt, j.max_attempts, j.kind, j.user_id, j.tenant_id, j.payload,
              c.state AS from_state, c.attempt AS previous_attempt,
              c.started_at AS previous_started_at
), history AS (
    -- A plain claim writes no row (started_at and attempt carry it, view job_history); a
    -- take-over stores the replaced attempt's claim (unless stored) and itself.
    INSERT INTO job_events (job_id, at, attempt, from_state, to_state, reason)
    SELECT id, previous_started_at, previous_attempt, 'queued', 'running', NULL
    FROM claimed AS t
    WHERE from_state = 'running' AND previous_started_at IS NOT NULL AND NOT EXISTS (
        SELECT FROM job_events AS e
        WHERE e.job_id = t.id AND e.attempt = t.previous_attempt AND e.to_state = 'running')
    UNION ALL
    SELECT id, clock_timestamp(), attempt, 'running', 'running', 'take_over'
    FROM claimed WHERE from_state = 'running'
)
SELECT id, attempt, max_attempts, kind, user_id, tenant_id, payload, from_state FROM claimed
"""

# One statement: the state change and its completion event, all or nothing. No history row:
# finished_at and the attempt carry the success (view job_history).
SUCCEED_SQL = """
WITH input AS MATERIALIZED (
    SELECT id, attempt, CAST(result AS jsonb) AS result, routing_key,
           decode(body, 'base64') AS body, 'running' AS from_state
    FROM jsonb_to_recordset(CAST(%(rows)s AS jsonb))
        AS t(id uuid, attempt integer, result text, routing_key text, body text)
), done AS (
    UPDATE jobs AS j
    SET state = 'succeeded', result = i.result, progress = 1.0,
        finished_at = clock_timestamp(), updated_at = clock_timestamp(), heartbeat_at = NULL,
        error_code = NULL, error_message = NULL
    FROM input AS i
    -- By primary key, as in the claim. The state is compared through `input` (a join
    -- clause), or the planner may scan the partial index of all running jobs instead.
    WHERE j.id = i.id AND j.attempt = i.attempt AND j.state = i.from_state
      AND j.id = ANY(ARRAY(SELECT id FROM input))
    RETURNING j.id, j.attempt
), events AS (
    INSERT INTO outbox (exchange, routing_key, body, priority)
    SELECT %(exchange)s, i.routing_key, i.body, 0 FROM done JOIN input AS i USING (id)
    WHERE i.routing_key IS NOT NULL  -- None: nobody subscribes to this kind's successes
)
SELECT id FROM done
"""


@dataclass(frozen=True)
class Claim:
    """A job this worker now runs: `attempt` is the fencing token for every later write."""

    job_id: uuid.UUID
    attempt: int
    max_attempts: int
    kind: str
    user_id: str
    tenant_id: str
    payload: dict[str, Any]
    took_over: bool = False


@dataclass(frozen=True)
class Delivery:
    """What a message asks to run: the job, and the kind and tenant it must have."""

    job_id: uuid.UUID
    kind: str
    tenant_id: str


@dataclass(frozen=True)
class Success:
    job_id: uuid.UUID
    attempt: int
    result_json: str  # serialized by the caller: one bad result cannot fail a batch
    routing_key: str | None  # None: no completion event (CONVEYOR_COMPLETION_EVENTS)
    event_body: bytes | None


# A batch travels as ONE JSON parameter (jsonb_to_recordset), not as one array per column:
# psycopg dumps arrays element by element in Python (~200 µs for a batch of four against
# ~40 µs as JSON), ~10 % of a worker process's samples on no-op jobs.


def claim_params(deliveries: Sequence[Delivery], *, worker: str, stale_s: float) -> dict[str, Any]:
    unique = list(dict.fromkeys(deliveries))
    wanted = [{"id": str(d.job_id), "kind": d.kind, "tenant_id": d.tenant_id} for d in unique]
    return {"wanted": json.dumps(wanted), "worker": worker, "stale_s": stale_s}


def claims_from_rows(rows: Sequence[Any]) -> dict[uuid.UUID, Claim]:
    return {
        r.id: Claim(
            r.id,
            r.attempt,
            r.max_attempts,
            r.kind,
            r.user_id,
            r.tenant_id,
            r.payload,
            took_over=r.from_state == "running",
        )
        for r in rows
    }


def succeed_params(successes: Sequence[Success], *, exchange: str) -> dict[str, Any]:
    rows = [
        {
            "id": str(s.job_id),
            "attempt": s.attempt,
            "result": s.result_json,
            "routing_key": s.routing_key,
            "body": None if s.event_body is None else base64.b64encode(s.event_body).decode(),
        }
        for s in successes
    ]
    return {"rows": json.dumps(rows), "exchange": exchange}


def claim_in_session(
    session: Session, delivery: Delivery, *, worker: str, stale_s: float
) -> Claim | None:
    """The per-job path: the same statement, in the caller's transaction."""
    params = claim_params([delivery], worker=worker, stale_s=stale_s)
    rows = session.connection().exec_driver_sql(CLAIM_SQL, params).all()
    return claims_from_rows(rows).get(delivery.job_id)


def succeed_in_session(session: Session, success: Success, *, exchange: str) -> bool:
    """The per-job path: the handler's writes and its success commit together."""
    params = succeed_params([success], exchange=exchange)
    return bool(session.connection().exec_driver_sql(SUCCEED_SQL, params).all())
