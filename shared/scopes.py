"""API key scopes: what a key may do, decided by pure functions (no I/O).

A key holds a list of scopes (admin keys hold `admin` through `api_keys.is_admin`):
- `write`: read and change everything its key owns (every key created before scopes);
- `read`: GET only; any change is 403 `forbidden_scope`;
- `submit:<kind>`: submit (and cancel) jobs of that kind, and read what the key owns;
  several `submit:` scopes may be combined, and `read` adds nothing to them;
- `admin` (the `is_admin` column): everything, every key's objects, and the admin-only
  routes (`GET /v1/audit`, the status page).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

READ = "read"
WRITE = "write"
ADMIN = "admin"
SUBMIT_PREFIX = "submit:"
DEFAULT_SCOPES = (WRITE,)


class InvalidScope(ValueError):
    """A scope string that is none of the above (or names no known kind)."""


def parse_scopes(values: Iterable[str], known_kinds: Iterable[str]) -> tuple[bool, list[str]]:
    """CLI input -> (is_admin, stored scopes). `admin` cannot be mixed with narrower scopes."""
    kinds = set(known_kinds)
    cleaned = sorted({v.strip() for v in values if v.strip()})
    if not cleaned:
        return False, list(DEFAULT_SCOPES)
    if ADMIN in cleaned:
        if cleaned != [ADMIN]:
            raise InvalidScope("admin already allows everything: give it alone")
        return True, []
    for scope in cleaned:
        if scope in (READ, WRITE):
            continue
        kind = scope.removeprefix(SUBMIT_PREFIX)
        if not scope.startswith(SUBMIT_PREFIX) or not kind:
            raise InvalidScope(f"unknown scope {scope!r}: read, write, admin or submit:<kind>")
        if kind not in kinds:
            raise InvalidScope(f"unknown kind {kind!r} in scope {scope!r}")
    if WRITE in cleaned and len(cleaned) > 1:
        raise InvalidScope("write already allows every kind: give it alone")
    return False, cleaned


def describe(is_admin: bool, scopes: Sequence[str]) -> str:
    return ADMIN if is_admin else ",".join(scopes) or "-"


def may_write(is_admin: bool, scopes: Sequence[str]) -> bool:
    return is_admin or WRITE in scopes


def may_submit(is_admin: bool, scopes: Sequence[str], kind: str) -> bool:
    return may_write(is_admin, scopes) or f"{SUBMIT_PREFIX}{kind}" in scopes


def submit_kinds(scopes: Sequence[str]) -> list[str]:
    return [s.removeprefix(SUBMIT_PREFIX) for s in scopes if s.startswith(SUBMIT_PREFIX)]
