"""tenancy: tenants, tenant_id on every tenant-data table, row-level security

Revision ID: 0010_tenancy12
Revises: 0010_limits12

- `tenants(id, name, created_at)` with the tenant `'default'`, which owns every existing row
  and key (`ADD COLUMN ... DEFAULT 'default'` backfills without a table rewrite; the default
  then becomes the acting tenant of the transaction, see shared/db/base.py).
- Per-user uniqueness becomes per (tenant, user): OAuth connections, storage totals, emails.
- The role `conveyor_app` (NOLOGIN, no BYPASSRLS) that tenant-scoped transactions switch to
  (shared/db/tenancy.py), with DML on the tables and default privileges for later ones; it
  may only read `tenants`, only append to `outbox`, and not touch `periodic_runs`.
- ENABLE + FORCE ROW LEVEL SECURITY and one policy per tenant-data table:
  `tenant_id = current_setting('conveyor.tenant_id', true)` (unset: no rows). job_events has
  no tenant column (the spine's claim/succeed statements write it): its policy shows the
  events of the jobs the tenant can see.
Roles are cluster-wide: downgrade revokes this database's grants but keeps the role.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010_tenancy12"
down_revision: str | None = "0010_limits12"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "conveyor_app"  # = shared.db.tenancy.APP_ROLE (migrations do not import app code)
ACTING = "current_setting('conveyor.tenant_id', true)"
TENANT_DEFAULT = "coalesce(nullif(current_setting('conveyor.tenant_id', true), ''), 'default')"

TENANT_TABLES: tuple[str, ...] = (
    "jobs",
    "uploads",
    "files",
    "user_storage",
    "oauth_connections",
    "oauth_states",
    "backups",
    "backup_settings",
    "exports",
    "export_schedules",
    "users",
    "channels",
    "channel_members",
    "messages",
    "contacts",
    "user_settings",
    "tasks",
    "decisions",
    "sync_devices",
    "sync_settings",
    "sync_field_versions",
    "sync_conflicts",
    "sync_batches",
)
# Created by earlier migrations with a tenant_id column of their own (0010_keys12).
PRE_SCOPED_TABLES: tuple[str, ...] = ("audit_events",)
# Policies also on these (their tenant column is set explicitly, not by default).
EXTRA_RLS_TABLES = ("api_keys",)
# The spine's own tables: the app role has no business there (rate-limit buckets are spent
# in a transaction of their own, as the owner).
OWNER_ONLY = ("periodic_runs", "alembic_version", "rate_limit_buckets")

CREATE_ROLE = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        CREATE ROLE {APP_ROLE} NOLOGIN NOBYPASSRLS;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database's migration created it at the same moment
END $$;
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, '{APP_ROLE}', 'MEMBER') THEN
        EXECUTE format('GRANT {APP_ROLE} TO %I', current_user);
    END IF;
END $$;
"""


def upgrade() -> None:
    op.execute(
        "CREATE TABLE tenants (id text NOT NULL, name text NOT NULL, "
        "created_at timestamptz NOT NULL DEFAULT now(), CONSTRAINT pk_tenants PRIMARY KEY (id))"
    )
    op.execute("INSERT INTO tenants (id, name) VALUES ('default', 'Default tenant')")
    op.execute(
        "ALTER TABLE api_keys ADD COLUMN tenant_id text NOT NULL DEFAULT 'default' "
        "CONSTRAINT fk_api_keys_tenant_id_tenants REFERENCES tenants (id)"
    )
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ADD COLUMN tenant_id text NOT NULL DEFAULT 'default'")
        op.execute(f"ALTER TABLE {table} ALTER COLUMN tenant_id SET DEFAULT {TENANT_DEFAULT}")
    for table in PRE_SCOPED_TABLES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN tenant_id SET DEFAULT {TENANT_DEFAULT}")
    _per_tenant_keys()
    op.execute(CREATE_ROLE)
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")
    op.execute(f"REVOKE ALL ON {', '.join(OWNER_ONLY)} FROM {APP_ROLE}")
    op.execute(f"REVOKE INSERT, UPDATE, DELETE ON tenants FROM {APP_ROLE}")
    # The outbox holds every tenant's envelopes: requests and handlers only append to it.
    op.execute(f"REVOKE SELECT, UPDATE, DELETE ON outbox FROM {APP_ROLE}")
    op.execute(f"GRANT SELECT (id) ON outbox TO {APP_ROLE}")  # INSERT ... RETURNING id
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}"
    )
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE}"
    )
    for table in (*TENANT_TABLES, *PRE_SCOPED_TABLES, *EXTRA_RLS_TABLES):
        _enable_rls(table, f"tenant_id = {ACTING}")
    _enable_rls("job_events", "EXISTS (SELECT 1 FROM jobs AS j WHERE j.id = job_events.job_id)")


def _per_tenant_keys() -> None:
    op.drop_constraint("uq_oauth_connections_user_provider", "oauth_connections", type_="unique")
    op.create_unique_constraint(
        "uq_oauth_connections_tenant_user_provider",
        "oauth_connections",
        ["tenant_id", "user_id", "provider"],
    )
    op.drop_constraint("pk_user_storage", "user_storage", type_="primary")
    op.create_primary_key("pk_user_storage", "user_storage", ["tenant_id", "user_id"])
    op.drop_index("uq_users_email_live", table_name="users")
    op.create_index(
        "uq_users_tenant_email_live",
        "users",
        ["tenant_id", "email"],
        unique=True,
        postgresql_where="deleted_at IS NULL",
    )
    op.drop_index("ix_jobs_user_created", table_name="jobs")
    op.create_index("ix_jobs_tenant_user_created", "jobs", ["tenant_id", "user_id", "created_at"])
    op.drop_index("ix_files_user_id_created_at", table_name="files")
    op.create_index(
        "ix_files_tenant_user_created_at", "files", ["tenant_id", "user_id", "created_at"]
    )


def _enable_rls(table: str, condition: str) -> None:
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} USING ({condition}) WITH CHECK ({condition})"
    )


def downgrade() -> None:
    for table in PRE_SCOPED_TABLES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN tenant_id SET DEFAULT 'default'")
    for table in ("job_events", *TENANT_TABLES, *PRE_SCOPED_TABLES, *EXTRA_RLS_TABLES):
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM {APP_ROLE}"
    )
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"REVOKE USAGE, SELECT ON SEQUENCES FROM {APP_ROLE}"
    )
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {APP_ROLE}")
    op.drop_index("ix_files_tenant_user_created_at", table_name="files")
    op.create_index("ix_files_user_id_created_at", "files", ["user_id", "created_at"])
    op.drop_index("ix_jobs_tenant_user_created", table_name="jobs")
    op.create_index("ix_jobs_user_created", "jobs", ["user_id", "created_at"])
    op.drop_index("uq_users_tenant_email_live", table_name="users")
    op.create_index(
        "uq_users_email_live",
        "users",
        ["email"],
        unique=True,
        postgresql_where="deleted_at IS NULL",
    )
    # Going back to one namespace of user ids: only the default tenant's rows survive.
    for table in TENANT_TABLES:
        op.execute(f"DELETE FROM {table} WHERE tenant_id <> 'default'")
    op.drop_constraint("pk_user_storage", "user_storage", type_="primary")
    op.create_primary_key("pk_user_storage", "user_storage", ["user_id"])
    op.drop_constraint(
        "uq_oauth_connections_tenant_user_provider", "oauth_connections", type_="unique"
    )
    op.create_unique_constraint(
        "uq_oauth_connections_user_provider", "oauth_connections", ["user_id", "provider"]
    )
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} DROP COLUMN tenant_id")
    op.execute("DELETE FROM api_keys WHERE tenant_id <> 'default'")
    op.execute("ALTER TABLE api_keys DROP COLUMN tenant_id")
    op.execute("DROP TABLE tenants")
