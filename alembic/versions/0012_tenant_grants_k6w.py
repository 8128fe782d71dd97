"""tenant role: append-only audit log, read-only API keys

Revision ID: 0012_tenant_grants_k6w
Revises: 0011_watermark_stats

0010_tenancy12 gave `conveyor_app` DML on every table; two of those grants are more than
tenant-scoped code ever uses (issue #12 review, finding 6). What runs as `conveyor_app`
(`bind_tenant` / `tenant_sessions`: API requests after authentication, device sync requests,
the OAuth callback's second transaction, job handlers) does, on these tables:
- `audit_events`: INSERT (`audit.record`, in the action's transaction; the ORM reads the
  generated id and defaults back, which needs SELECT) and SELECT (`GET /v1/audit`); never
  UPDATE or DELETE. Revoking them makes the log append-only for the tenant role, so a bug or
  an injection in tenant code cannot rewrite or erase its own trail.
- `api_keys`: SELECT only (a key is found by its prefix as the owner, before the switch;
  within the request the key row may be re-read). Keys are created, revoked and rotated by
  the `conveyor apikey` CLI, which runs as the owner.
The owner (the connection's role: superuser, or table owner with BYPASSRLS) is untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012_tenant_grants_k6w"
down_revision: str | None = "0011_watermark_stats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "conveyor_app"  # = shared.db.tenancy.APP_ROLE (migrations do not import app code)

# table -> privileges the tenant role loses (what it keeps: SELECT and, for the log, INSERT).
REVOKED = {
    "audit_events": "UPDATE, DELETE",
    "api_keys": "INSERT, UPDATE, DELETE",
}


def upgrade() -> None:
    for table, privileges in REVOKED.items():
        op.execute(f"REVOKE {privileges} ON {table} FROM {APP_ROLE}")


def downgrade() -> None:
    for table, privileges in REVOKED.items():
        op.execute(f"GRANT {privileges} ON {table} TO {APP_ROLE}")
