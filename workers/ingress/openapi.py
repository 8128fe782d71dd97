"""The OpenAPI document: every error status a route can answer, with the `{code, message}` body.

FastAPI documents only a route's success and its 422; the error statuses below follow from
what an operation has (a security scheme, a body, a write, a cursor) rather than being
listed by hand on each of ~45 routes, so a new route is documented the moment it exists.
docs/api.md names the codes behind each status.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from workers.ingress.schemas import ErrorOut

ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}

DESCRIPTIONS = {
    400: "Unparseable body (`invalid_json`, also nested too deeply) or a bad cursor",
    401: "Missing, unknown or revoked credentials (`unauthorized`)",
    403: "The credentials may not do this (`kind_not_public`, `device_revoked`)",
    404: "No such object for this key, or no such route (`not_found`, ...)",
    409: "The object's state does not allow this now (`not_cancellable`, ...)",
    413: "Body over the limit (`body_too_large`) or declared upload too large (`too_large`)",
    422: "A field is invalid (`invalid_request`, `unknown_kind`, `invalid_payload`, ...)",
    429: "Too many requests or jobs (`rate_limited`, `queue_full`, ...), with `Retry-After`",
    500: "A bug (`internal_error`); details only in the server log",
    502: "The OAuth provider failed (`provider_error`, `invalid_client`)",
    503: "A dependency is down (`database_unavailable`, `storage_unavailable`, ...)",
}

WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def error_statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    """What an operation can answer besides success, from what it has."""
    statuses = {404, 422, 500, 503}
    if operation.get("security"):
        statuses |= {401, 403, 429}
    if "requestBody" in operation:
        statuses |= {400, 413}
    if method.upper() in WRITES or "{" in path:
        statuses.add(409)  # a write, or an object whose state may not allow it yet
    if any(p["name"] == "cursor" for p in operation.get("parameters", [])):
        statuses.add(400)  # bad_cursor: an opaque cursor not issued by us
    if path.startswith(("/v1/oauth", "/v1/connections")):
        statuses |= {400, 409, 502}  # OAuth state, provider not configured, provider errors
    return statuses


# Every free-form string refuses NUL (input_guard.py): stated in the schema too, so a client
# generator (or a fuzzer) knows a NUL is invalid rather than finding out from a 422.
NO_NUL = "^[^\\u0000]*$"


ANY_JSON = {"$ref": "#/components/schemas/JsonWithoutNul"}
# What a free-form field (`Any`) accepts: any JSON without NUL in strings or keys.
JSON_WITHOUT_NUL: dict[str, Any] = {
    "anyOf": [
        {"type": "null"},
        {"type": "boolean"},
        {"type": "number"},
        {"type": "string", "pattern": NO_NUL},
        {"type": "array", "items": ANY_JSON},
        {"type": "object", "propertyNames": {"pattern": NO_NUL}, "additionalProperties": ANY_JSON},
    ]
}
ANNOTATIONS = {"title", "description", "default", "examples"}


def _free_form(node: Any) -> bool:
    return node is True or (isinstance(node, dict) and not node.keys() - ANNOTATIONS)


def _strings_without_nul(node: Any) -> None:
    if isinstance(node, dict):
        _restrict(node)
        for child in node.values():
            _strings_without_nul(child)
    elif isinstance(node, list):
        for child in node:
            _strings_without_nul(child)


def _restrict(node: dict[str, Any]) -> None:
    """One schema node: free-form strings, object keys and `Any` values lose NUL."""
    fixed = {"enum", "const", "format", "pattern"} & node.keys()
    if node.get("type") == "string" and not fixed:
        node["pattern"] = NO_NUL
    if node.get("type") == "object":
        node.setdefault("propertyNames", {"pattern": NO_NUL})
    for key in ("items", "additionalProperties"):
        if _free_form(node.get(key)):
            node[key] = dict(ANY_JSON)
    properties: dict[str, Any] = node.get("properties") or {}
    for name, child in properties.items():
        if _free_form(child):
            properties[name] = {**child, **ANY_JSON}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schema.setdefault("components", {}).setdefault("schemas", {})["ErrorOut"] = (
        ErrorOut.model_json_schema()
    )
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status in sorted(error_statuses(path, method, operation)):
                responses[str(status)] = {
                    "description": DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": ERROR_REF}},
                }
    _strings_without_nul(schema["paths"])
    _strings_without_nul(schema["components"]["schemas"])
    schema["components"]["schemas"]["JsonWithoutNul"] = JSON_WITHOUT_NUL
    app.openapi_schema = schema
    return schema


def install(app: FastAPI) -> None:
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
