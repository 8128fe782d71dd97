"""One gate for hostile input, run before any route sees a request.

What PostgreSQL or our JSON encoder cannot take is refused here with a 4xx `{code, message}`
naming the field, instead of surfacing as a 500 from deep inside a query:
- a NUL character (U+0000) in any string: the path, a query parameter, a header, a JSON
  string or key
  (PostgreSQL `text` and `jsonb` cannot store it);
- a non-finite number (`NaN`, `Infinity`, or `1e400`, which Python's JSON parser accepts
  but JSON and `jsonb` do not);
- JSON nested deeper than `MAX_JSON_DEPTH` (bounded work for every later walk of the body).

Checked once per request, on the body FastAPI has already read and parsed (both cached on
the request), so no route or schema needs its own copy of these rules.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request

from shared.errors import PermanentError

# Deep enough for any payload a kind documents (the deepest is 4), shallow enough that a
# 1 MiB body of brackets is refused after a bounded walk.
MAX_JSON_DEPTH = 32


class InvalidText(PermanentError):
    """A string that cannot be stored; 422 like any other invalid field."""

    code = "invalid_request"


class TooDeep(PermanentError):
    code = "invalid_json"


def _where(path: list[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def check_json(value: Any) -> None:
    """Raise for the first NUL, non-finite number or too-deep nesting in a parsed body."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            raise TooDeep(f"request body is nested deeper than {MAX_JSON_DEPTH} levels")
        _check_scalar(item, path)
        if isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    raise InvalidText(f"{_where(path)}: a key contains a NUL (\\u0000) character")
                stack.append((child, [*path, key]))
        elif isinstance(item, list):
            stack.extend((child, [*path, i]) for i, child in enumerate(item))


def _check_scalar(item: Any, path: list[str | int]) -> None:
    if isinstance(item, str) and "\x00" in item:
        raise InvalidText(f"{_where(path)}: must not contain NUL (\\u0000) characters")
    if isinstance(item, float) and not math.isfinite(item):
        raise InvalidText(f"{_where(path)}: must be a finite number")


def check_url_and_headers(request: Request) -> None:
    """Path, query and headers (an HTTP/1.1 server refuses NUL in a header; an ASGI
    client or a proxy speaking HTTP/2 may not)."""
    if "\x00" in request.url.path:
        raise InvalidText("path: must not contain NUL characters")
    named = (("", request.query_params.multi_items()), ("header ", request.headers.items()))
    for where, items in named:
        for name, value in items:
            if "\x00" in name or "\x00" in value:
                shown = name.replace("\x00", "")
                raise InvalidText(f"{where}{shown}: must not contain NUL characters")


async def guard_input(request: Request) -> None:
    """App-wide dependency: runs before the route's own parameters are validated."""
    check_url_and_headers(request)
    if request.method in ("POST", "PUT", "PATCH") and _is_json(request):
        body = await request.body()
        if body:
            try:
                parsed = await request.json()
            except ValueError:
                return  # FastAPI answers unparseable bodies itself (400 invalid_json)
            check_json(parsed)


def _is_json(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    return "json" in content_type.split(";", 1)[0].lower()
