"""/v1/jobs: submit, batch, get, list, cancel."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response

from shared.db.models import ApiKey, Job
from shared.db.models.jobs import JOB_STATES
from shared.db.repos import jobs as jobs_repo
from shared.errors import ConveyorError, PermanentError
from shared.jobs.cancel import cancel_job
from shared.jobs.catalog import get_spec
from shared.jobs.submit import NewJob, submit_jobs
from workers.ingress.cursors import decode_cursor, encode_cursor
from workers.ingress.deps import ApiKeyDep, SessionDep
from workers.ingress.schemas import BatchIn, BatchOut, JobIn, JobOut, JobPage

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class JobNotFound(ConveyorError):
    code = "not_found"


class BadRequest(PermanentError):
    code = "bad_request"


class KindNotPublic(PermanentError):
    code = "kind_not_public"


def _new_job(body: JobIn, idempotency_key: str | None = None) -> NewJob:
    if not get_spec(body.kind).public:
        raise KindNotPublic(f"{body.kind} is internal: use its own API", kind=body.kind)
    return NewJob(
        kind=body.kind,
        user_id=body.user_id,
        payload=body.payload,
        priority=body.priority,
        run_at=body.run_at,
        delay_s=body.delay_s,
        idempotency_key=idempotency_key,
    )


def _batch_job(index: int, body: JobIn) -> NewJob:
    try:
        return _new_job(body)
    except ConveyorError as exc:
        exc.message = f"jobs[{index}]: {exc.message}"
        raise


def _visible(session: SessionDep, key: ApiKey, job_id: uuid.UUID) -> Job:
    job = jobs_repo.get(session, job_id)
    if job is None or (not key.is_admin and job.api_key_id != key.id):
        raise JobNotFound("no such job", job_id=job_id)
    return job


@router.post("", status_code=202, response_model=JobOut)
def submit(
    body: JobIn,
    session: SessionDep,
    key: ApiKeyDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobOut:
    [outcome] = submit_jobs(
        session, [_new_job(body, idempotency_key)], source="ingress", api_key_id=key.id
    )
    if not outcome.created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    session.flush()
    return JobOut.of(_visible(session, key, outcome.job_id))


@router.post(":batch", status_code=202, response_model=BatchOut)
def submit_batch(body: BatchIn, session: SessionDep, key: ApiKeyDep, request: Request) -> BatchOut:
    limit = request.app.state.settings.max_batch_jobs
    if len(body.jobs) > limit:
        raise BadRequest(f"at most {limit} jobs per batch", code="batch_too_large")
    outcomes = submit_jobs(
        session,
        [_batch_job(i, j) for i, j in enumerate(body.jobs)],
        source="ingress",
        api_key_id=key.id,
    )
    session.flush()
    jobs = {j.id: j for j in _by_ids(session, [o.job_id for o in outcomes])}
    return BatchOut(jobs=[JobOut.of(jobs[o.job_id]) for o in outcomes])


def _by_ids(session: SessionDep, ids: list[uuid.UUID]) -> list[Job]:
    from sqlalchemy import select

    return list(session.execute(select(Job).where(Job.id.in_(ids))).scalars())


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: uuid.UUID, session: SessionDep, key: ApiKeyDep) -> JobOut:
    job = _visible(session, key, job_id)
    return JobOut.of(job, jobs_repo.history_of(session, job.id))


@router.get("", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    key: ApiKeyDep,
    kind: str | None = None,
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


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel(job_id: uuid.UUID, session: SessionDep, key: ApiKeyDep) -> JobOut:
    job = cancel_job(session, _visible(session, key, job_id))
    return JobOut.of(job)
