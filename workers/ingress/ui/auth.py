"""Who may see the status page: an admin API key, or the operator token setting.

The browser keeps the token in an HttpOnly, SameSite=Strict cookie scoped to /ui; every
request checks it again, so a revoked key loses access at once.
"""

from __future__ import annotations

import hmac

from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db.repos import api_keys as api_keys_repo
from shared.db.tenancy import DEFAULT_TENANT

COOKIE = "conveyor_operator"
COOKIE_MAX_AGE_S = 8 * 3600


def operator_name(session: Session, settings: Settings, token: str | None) -> str | None:
    """The name to show for a valid token; None for anything else."""
    if not token:
        return None
    expected = settings.operator_token.get_secret_value() if settings.operator_token else ""
    if expected and hmac.compare_digest(token.encode(), expected.encode()):
        return "operator"
    key = api_keys_repo.authenticate(session, token)
    # The operator view crosses tenants: only the default (operators') tenant's admin keys.
    if key is None or not key.is_admin or key.tenant_id != DEFAULT_TENANT:
        return None
    return key.name
