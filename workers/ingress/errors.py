"""Every error the ingress answers is JSON `{code, message}` (docs/api.md lists the codes).

Handlers, most specific first: Conveyor's own errors, request validation, Starlette's HTTP
errors (unknown route, wrong method, unparseable body), an unreachable database (503 with
Retry-After) and, last, anything unexpected (500 `internal_error`, details only in the log).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from shared.errors import ConveyorError, PermanentError

log = structlog.get_logger("ingress")

# Seconds a client should wait before retrying when the database is unreachable.
DATABASE_RETRY_AFTER_S = 5

HTTP_CODES = {
    400: "invalid_json",  # FastAPI's only plain 400: a body it could not parse (e.g. too deep)
    404: "not_found",
    405: "method_not_allowed",
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def field_path(loc: Sequence[int | str]) -> str:
    """("body", "jobs", 3, "run_at") -> "jobs[3].run_at"; the request part is implied."""
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or str(loc[0] if loc else "body")


def validation_message(error: dict[str, Any]) -> str:
    if error["type"] == "json_invalid":
        reason = error.get("ctx", {}).get("error", "invalid JSON")
        return f"request body is not valid JSON: {reason} at character {error['loc'][-1]}"
    where = field_path(error["loc"])
    return f"{where}: {error['msg'].removeprefix('Value error, ')}"


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return error_response(400, "invalid_json", validation_message(first))
    return error_response(422, "invalid_request", validation_message(first))


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    if getattr(request.state, "body_too_large", False):
        limit = request.app.state.settings.max_body_bytes
        return error_response(413, "body_too_large", f"request body exceeds {limit} bytes")
    code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    messages = {
        400: "the request body could not be parsed (not JSON, or nested too deeply)",
        404: f"no route {request.method} {request.url.path}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }
    message = messages.get(exc.status_code, str(exc.detail))
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
    return error_response(exc.status_code, code, message, headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path. Starlette's own `Allow` names only the
    first route that matched the path, but FastAPI makes one route per method."""
    return [
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    ]


HTTP_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("ingress.database_unavailable", error=type(exc).__name__, path=request.url.path)
    return error_response(
        503,
        "database_unavailable",
        "the database is unreachable; retry later",
        {"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this answer, so uvicorn still logs the traceback.
    log.error("ingress.request_failed", error=type(exc).__name__, path=request.url.path)
    return error_response(500, "internal_error", "internal error; it has been logged")


def install(app: FastAPI, status_by_code: dict[str, int]) -> None:
    @app.exception_handler(ConveyorError)
    async def conveyor_error(request: Request, exc: ConveyorError) -> JSONResponse:
        status = status_by_code.get(exc.code, 400 if isinstance(exc, PermanentError) else 500)
        retry_after = getattr(exc, "retry_after", None)  # 429s and 503s say when to retry
        headers = {"Retry-After": str(math.ceil(retry_after))} if retry_after else None
        return error_response(status, exc.code, exc.message, headers)

    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    for cls in (OperationalError, InterfaceError, psycopg.OperationalError):
        app.add_exception_handler(cls, database_unavailable)
    app.add_exception_handler(Exception, internal_error)
