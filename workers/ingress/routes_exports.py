"""/v1/exports and /v1/export-schedules: request, follow, cancel and remove analytics exports.

The file itself is built by the `export.create` job; these routes create the export row and
its job in one transaction and hand out presigned download links.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, get_args

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from shared.db.models import ApiKey, Export, Job
from shared.db.repos import audit as audit_repo
from shared.db.repos import exports as exports_repo
from shared.jobs.cancel import cancel_job
from shared.jobs.payloads.exports import Compression, ExportFormat, ExportRequest, RangeKind
from shared.storage.base import ObjectStore
from workers.exports import schedules
from workers.exports.datasets import DATASETS
from workers.exports.service import download_url
from workers.exports.submit import Limits, RateLimited, check_limits, submit_export, validate
from workers.exports.templates import TEMPLATES, template_columns
from workers.ingress.deps import ApiKeyDep, SessionDep, may_see
from workers.ingress.routes_files import NotFound, SettingsDep, StoreDep
from workers.ingress.schemas_exports import (
    ExportIn,
    ExportOut,
    ExportPage,
    ScheduleIn,
    ScheduleOut,
    TemplateList,
    TemplateOut,
)

router = APIRouter(tags=["exports"])

ACTIVE = ("queued", "running")


def _limits(settings: SettingsDep) -> Limits:
    return Limits(
        concurrent=settings.export_max_concurrent_per_user,
        daily=settings.export_max_daily_per_user,
        anonymize_available=settings.export_pseudonym_key is not None,
    )


def _visible(session: SessionDep, key: ApiKey, export_id: uuid.UUID) -> tuple[Export, Job | None]:
    found = exports_repo.with_job(session, export_id)
    if found is None or not may_see(key, found[0]):
        raise NotFound("no such export", export_id=export_id)
    return found


def _out(export: Export, job: Job | None, store: ObjectStore | None) -> ExportOut:
    url = download_url(export, store, now=datetime.now(UTC)) if store else None
    return ExportOut.of(export, job, url)


def _out_audited(
    session: SessionDep, key: ApiKey, export: Export, job: Job | None, store: ObjectStore | None
) -> ExportOut:
    """As `_out`, recording `export.link_issued` when a download link is handed out."""
    out = _out(export, job, store)
    if out.download_url is not None:
        audit_repo.record(
            session,
            action="export.link_issued",
            target=f"export:{export.id}",
            actor="api",
            key=key,
            user_id=export.user_id,
        )
    return out


def _too_many(exc: RateLimited) -> JSONResponse:
    return JSONResponse(
        {"code": exc.code, "message": exc.message},
        status_code=429,
        headers={"Retry-After": str(exc.retry_after)},
    )


@router.get("/v1/exports/templates", response_model=TemplateList)
def list_templates(key: ApiKeyDep) -> TemplateList:
    del key  # any valid key may read the catalogue

    def cols(items: list[tuple[str, str, str | None]]) -> list[dict[str, str | None]]:
        return [{"name": n, "type": t, "sensitivity": s} for n, t, s in items]

    return TemplateList(
        templates=[
            TemplateOut(
                name=t.name,
                title=t.title,
                description=t.description,
                columns=cols([(c.name, c.type, c.sensitivity) for c in template_columns(t)]),
                chart=t.chart is not None or t.name == "custom",
            )
            for t in TEMPLATES.values()
        ],
        datasets={
            d.name: cols([(c.name, c.type, c.sensitivity) for c in d.columns])
            for d in DATASETS.values()
        },
        formats=[f.value for f in ExportFormat],
        compressions=[c.value for c in Compression],
        ranges=list(get_args(RangeKind)),
    )


@router.post("/v1/exports", status_code=202, response_model=ExportOut)
def create(
    body: ExportIn, session: SessionDep, key: ApiKeyDep, settings: SettingsDep
) -> ExportOut | JSONResponse:
    limits = _limits(settings)
    validate(session, body.user_id, body, limits)
    try:
        check_limits(session, body.user_id, limits, datetime.now(UTC))
    except RateLimited as exc:
        return _too_many(exc)
    request = ExportRequest.model_validate(body.model_dump(exclude={"user_id"}, by_alias=True))
    export = submit_export(session, user_id=body.user_id, request=request, api_key_id=key.id)
    return ExportOut.of(export, None).model_copy(update={"status": "queued"})


@router.get("/v1/exports", response_model=ExportPage)
def list_exports(
    session: SessionDep,
    key: ApiKeyDep,
    store: StoreDep,
    user_id: str,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ExportPage:
    rows = exports_repo.list_for_user(
        session, user_id, api_key_id=None if key.is_admin else key.id, limit=limit
    )
    return ExportPage(exports=[_out_audited(session, key, e, j, store) for e, j in rows])


@router.get("/v1/exports/{export_id:uuid}", response_model=ExportOut)
def get_export(
    export_id: uuid.UUID, session: SessionDep, key: ApiKeyDep, store: StoreDep
) -> ExportOut:
    return _out_audited(session, key, *_visible(session, key, export_id), store)


@router.post("/v1/exports/{export_id:uuid}/cancel", response_model=ExportOut)
def cancel(export_id: uuid.UUID, session: SessionDep, key: ApiKeyDep) -> ExportOut:
    export, job = _visible(session, key, export_id)
    if job is None:
        raise NotFound("export has no job", export_id=export_id)
    return _out(export, cancel_job(session, job), None)


@router.delete("/v1/exports/{export_id:uuid}", status_code=204)
def delete(export_id: uuid.UUID, session: SessionDep, key: ApiKeyDep, store: StoreDep) -> Response:
    export, job = _visible(session, key, export_id)
    if job is not None and job.state in ACTIVE:
        cancel_job(session, job)
    if export.status != "deleted":
        place = exports_repo.mark_deleted(session, export.id)
        if place is not None:
            store.delete(*place)
    return Response(status_code=204)


@router.post("/v1/export-schedules", status_code=201, response_model=ScheduleOut)
def create_schedule(
    body: ScheduleIn, session: SessionDep, key: ApiKeyDep, settings: SettingsDep
) -> ScheduleOut:
    timezone = validate(session, body.user_id, body.export, _limits(settings))
    timezone = body.timezone or timezone
    schedule = exports_repo.add_schedule(
        session,
        schedules.new_schedule(body.user_id, body.cron, timezone, body.export, key.id),
    )
    return ScheduleOut.of(schedule)


@router.get("/v1/export-schedules", response_model=list[ScheduleOut])
def list_schedules(session: SessionDep, key: ApiKeyDep, user_id: str) -> list[ScheduleOut]:
    found = exports_repo.list_schedules(
        session, user_id, api_key_id=None if key.is_admin else key.id
    )
    return [ScheduleOut.of(s) for s in found]


@router.delete("/v1/export-schedules/{schedule_id:uuid}", status_code=204)
def delete_schedule(schedule_id: uuid.UUID, session: SessionDep, key: ApiKeyDep) -> Response:
    schedule = exports_repo.get_schedule(session, schedule_id)
    if schedule is None or not may_see(key, schedule):
        raise NotFound("no such schedule", schedule_id=schedule_id)
    exports_repo.delete_schedule(session, schedule)
    return Response(status_code=204)
