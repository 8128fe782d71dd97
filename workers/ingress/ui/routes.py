"""/ui: the status page, one job's history, and the login that sets the operator cookie."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader
from starlette.templating import Jinja2Templates

from shared.config import Settings
from shared.db.models.jobs import TERMINAL_STATES
from shared.db.repos import jobs as jobs_repo
from shared.messaging.depth import queue_depths
from workers.ingress.deps import SessionDep
from workers.ingress.ui.auth import COOKIE, COOKIE_MAX_AGE_S, operator_name
from workers.ingress.ui.overview import DepthReader, build_overview

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(
    env=Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True)
)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("refresh_s", _settings(request).ui_refresh_s)
    return templates.TemplateResponse(request, name, context, status_code=status)


def _to_login() -> RedirectResponse:
    return RedirectResponse("/ui/login", status_code=303)


def _depth_reader(settings: Settings) -> DepthReader | None:
    broker_url = settings.broker_url
    if not broker_url:
        return None
    return lambda: queue_depths(broker_url, settings.rabbitmq_api_url)


@router.get("")
def overview(request: Request, session: SessionDep) -> Response:
    settings = _settings(request)
    who = operator_name(session, settings, request.cookies.get(COOKIE))
    if who is None:
        return _to_login()
    snapshot = build_overview(session, _depth_reader(settings), datetime.now(UTC))
    return _page(request, "overview.html", o=snapshot, who=who)


@router.get("/jobs/{job_id}")
def job_page(request: Request, session: SessionDep, job_id: str) -> Response:
    who = operator_name(session, _settings(request), request.cookies.get(COOKIE))
    if who is None:
        return _to_login()
    try:
        job = jobs_repo.get(session, uuid.UUID(job_id))
    except ValueError:
        job = None
    if job is None:
        return _page(request, "not_found.html", 404, job_id=job_id, who=who, refresh_s=0)
    refresh_s = 0 if job.state in TERMINAL_STATES else _settings(request).ui_refresh_s
    events = jobs_repo.history_of(session, job.id)
    return _page(request, "job.html", job=job, events=events, who=who, refresh_s=refresh_s)


@router.get("/login")
def login_form(request: Request) -> Response:
    return _page(request, "login.html", error=None, refresh_s=0)


@router.post("/login")
async def login(request: Request, session: SessionDep) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    settings = _settings(request)
    if operator_name(session, settings, token) is None:
        error = "Not an admin API key or the operator token."
        return _page(request, "login.html", 401, error=error, refresh_s=0)
    response = RedirectResponse("/ui", status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_MAX_AGE_S,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=settings.public_url.startswith("https://"),
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = _to_login()
    response.delete_cookie(COOKIE, path="/ui")
    return response
