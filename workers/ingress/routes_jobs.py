"""/v1/jobs: submit, batch, get, list, cancel."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from shared.db.engine import session_scope
from shared.db.models import ApiKey, Job
from shared.db.models.jobs import JOB_STATES
from shared.db.repos import jobs as jobs_repo
from shared.db.tenancy import bind_tenant
from shared.errors import ConveyorError, PermanentError
from shared.jobs.cancel import cancel_job
from shared.jobs.caps import NearTheCap, check_one_beside_others, check_queue_caps
from shared.jobs.catalog import get_spec
from shared.jobs.submit import NewJob, Submitted, submit_jobs
from shared.messaging.handoff import Handoff
from workers.ingress.cursors import decode_cursor, encode_cursor
from workers.ingress.deps import (
    ApiKeyDep,
    CommittedSubmitKeyDep,
    SessionDep,
    SubmitKeyDep,
    may_see,
    require_kind,
)
from workers.ingress.quotas import check_batch_work
from workers.ingress.schemas import (
    BatchIn,
    BatchOut,
    JobIn,
    JobOut,
    JobPage,
    all_kinds,
    new_job_out,
)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class JobNotFound(ConveyorError):
    code = "not_found"


class BadRequest(PermanentError):
    code = "bad_request"


class KindNotPublic(PermanentError):
    code = "kind_not_public"


def _new_job(key: ApiKey, body: JobIn, idempotency_key: str | None = None) -> NewJob:
    if not get_spec(body.kind).public:
        raise KindNotPublic(f"{body.kind} is internal: use its own API", kind=body.kind)
    require_kind(key, body.kind)
    return NewJob(
        kind=body.kind,
        user_id=body.user_id,
        payload=body.payload,
        priority=body.priority,
        run_at=body.run_at,
        delay_s=body.delay_s,
        idempotency_key=idempotency_key,
    )


def _batch_job(key: ApiKey, index: int, body: JobIn) -> NewJob:
    try:
        return _new_job(key, body)
    except ConveyorError as exc:
        exc.message = f"jobs[{index}]: {exc.message}"
        raise


def _visible(session: SessionDep, key: ApiKey, job_id: uuid.UUID) -> Job:
    job = jobs_repo.get(session, job_id)
    if job is None or not may_see(key, job):
        raise JobNotFound("no such job", job_id=job_id)
    return job


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    responses={200: {"model": JobOut, "description": "replayed: `Idempotent-Replayed: true`"}},
)
async def submit(
    body: JobIn,
    key: CommittedSubmitKeyDep,
    response: Response,
    request: Request,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobOut:
    # The busiest route: its whole transaction in one worker-thread hop (see the key's dep).
    job, replayed = await run_in_threadpool(_submit, request, key, body, idempotency_key)
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return job


def _submit(
    request: Request, key: ApiKey, body: JobIn, idempotency_key: str | None
) -> tuple[JobOut, bool]:
    new = _new_job(key, body, idempotency_key)
    try:
        return _submit_one(request, key, new, beside_others=True)
    except NearTheCap:  # nothing was written: the same again, serialized and exact
        return _submit_one(request, key, new, beside_others=False)


def _submit_one(
    request: Request, key: ApiKey, new: NewJob, *, beside_others: bool
) -> tuple[JobOut, bool]:
    """The job in the key's tenant, committed before the answer (as `SessionDep` does)."""
    settings = request.app.state.settings
    with session_scope(request.app.state.sessions) as session:
        bind_tenant(session, key.tenant_id)
        # A replay adds no job: it is answered (200, or 422 idempotency_mismatch) even at the cap.
        replay = new.idempotency_key and jobs_repo.find_by_idempotency_key(
            session, key.id, new.idempotency_key
        )
        if not replay and beside_others:
            check_one_beside_others(session, settings, key.tenant_id, new.kind)
        elif not replay:
            check_queue_caps(session, settings, key.tenant_id, [new.kind])
        [outcome] = submit_jobs(
            session, [new], source="ingress", api_key_id=key.id, handoff=_handoff(request)
        )
        return _answer(session, key, outcome), not outcome.created


@router.post(":batch", status_code=202, response_model=BatchOut)
def submit_batch(
    body: BatchIn, session: SessionDep, key: SubmitKeyDep, request: Request
) -> BatchOut:
    settings = request.app.state.settings
    if len(body.jobs) > settings.max_batch_jobs:
        raise BadRequest(
            f"at most {settings.max_batch_jobs} jobs per batch", code="batch_too_large"
        )
    new = [_batch_job(key, i, j) for i, j in enumerate(body.jobs)]
    check_batch_work(settings, new)
    # All or nothing: the batch as a whole.
    check_queue_caps(session, settings, key.tenant_id, [job.kind for job in new])
    # No hand-off: a batch's messages go out in the relay's batches. Handed off, 1,000 of
    # them cost the ingress ~20 µs each and a batch route 20 % of its jobs/s
    # (docs/benchmarks.md, "Stop 27"), for latency a batch's submitter does not wait on.
    outcomes = submit_jobs(session, new, source="ingress", api_key_id=key.id)
    return BatchOut(jobs=[_answer(session, key, outcome) for outcome in outcomes])


def _handoff(request: Request) -> Handoff | None:
    """The app's submit hand-off (None without RabbitMQ, or an app run without lifespan)."""
    return getattr(request.app.state, "handoff", None)


def _answer(session: SessionDep, key: ApiKey, outcome: Submitted) -> JobOut:
    """A new job from its row as inserted; an existing one (its id taken) as stored."""
    if outcome.row is not None and outcome.created_at is not None:
        return new_job_out(outcome.row, outcome.created_at)
    return JobOut.of(_visible(session, key, outcome.job_id))


@router.get("/{job_id:uuid}", response_model=JobOut)
def get_job(job_id: uuid.UUID, session: SessionDep, key: ApiKeyDep) -> JobOut:
    job = _visible(session, key, job_id)
    return JobOut.of(job, jobs_repo.history_of(session, job.id))


@router.get("", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    key: ApiKeyDep,
    kind: Annotated[
        str | None,
        Query(json_schema_extra={"enum": all_kinds()}, description="any catalogued kind"),
    ] = None,
    state: Literal[JOB_STATES] | None = None,  # type: ignore[valid-type]
    user_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> JobPage:
    if kind is not None:
        get_spec(kind)  # an unknown kind is a 422, not an always-empty list
    jobs = jobs_repo.list_jobs(
        session,
        user_ids=[user_id] if user_id else None,
        api_key_id=None if key.is_admin else key.id,
        kind=kind,
        state=state,
        after=decode_cursor(cursor) if cursor else None,
        limit=limit,
    )
    next_cursor = encode_cursor(jobs[-1].created_at, jobs[-1].id) if len(jobs) == limit else None
    return JobPage(jobs=[JobOut.of(j) for j in jobs], next_cursor=next_cursor)


@router.post("/{job_id:uuid}/cancel", response_model=JobOut)
def cancel(job_id: uuid.UUID, session: SessionDep, key: SubmitKeyDep) -> JobOut:
    visible = _visible(session, key, job_id)
    require_kind(key, visible.kind)
    job = cancel_job(session, visible)
    return JobOut.of(job)
