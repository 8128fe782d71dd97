"""sync registers: one row per entity instead of one per field

Revision ID: 0013_sync_registers
Revises: 0012_tenant_grants_k6w

`sync_field_versions` held one row per (user, entity, field): a 10,000-entity sync read,
decoded and wrote 50,000 rows. `sync_registers` holds one row per (user, entity) with every
register of the entity in one JSONB object, `{field: [hlc_ms, hlc_counter, node, value,
applied_at_us]}` (applied_at as microseconds since the Unix epoch, exact). Rows are copied over;
the old table is dropped. The table is tenant data like the one it replaces: forced RLS with
the same policy, DML for the tenant role.

`sync_newer_registers(old, new)` merges two register maps field by field, keeping the later
timestamp (ms, counter, node in byte order) — a register only ever moves forward, which the
old table's upsert said with a WHERE on each row. Upserts of messages use it: their registers
belong to the author, and another member's sync (holding another user's lock) may fold a
server edit into them while the author's own sync merges. Other entities' registers are
written only under their user's sync lock, so they are simply replaced (PL/pgSQL: ~20 µs a
row, measured; the SQL-language form with a FULL JOIN of jsonb_each: ~35 µs).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013_sync_registers"
down_revision: str | None = "0012_tenant_grants_k6w"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "conveyor_app"  # = shared.db.tenancy.APP_ROLE (migrations do not import app code)
ACTING = "current_setting('conveyor.tenant_id', true)"
TENANT_DEFAULT = "coalesce(nullif(current_setting('conveyor.tenant_id', true), ''), 'default')"

NEWER_REGISTERS = """
CREATE FUNCTION sync_newer_registers(old jsonb, new jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    field text;
    theirs jsonb;
    ours jsonb;
    merged jsonb := old;
BEGIN
    FOR field, theirs IN SELECT key, value FROM jsonb_each(new) LOOP
        ours := old -> field;
        IF ours IS NULL
           OR ((theirs->>0)::bigint, (theirs->>1)::int, (theirs->>2) COLLATE "C")
            > ((ours->>0)::bigint, (ours->>1)::int, (ours->>2) COLLATE "C") THEN
            merged := merged || jsonb_build_object(field, theirs);
        END IF;
    END LOOP;
    RETURN merged;
END
$$
"""

EPOCH_US = "(extract(epoch FROM {})::numeric * 1000000)::bigint"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE sync_registers (
            user_id uuid NOT NULL,
            entity_type varchar(20) NOT NULL,
            entity_id varchar(100) NOT NULL,
            registers jsonb NOT NULL,
            tenant_id text NOT NULL DEFAULT {TENANT_DEFAULT},
            CONSTRAINT pk_sync_registers PRIMARY KEY (user_id, entity_type, entity_id),
            CONSTRAINT fk_sync_registers_user_id_users FOREIGN KEY (user_id)
                REFERENCES users (id) ON DELETE CASCADE
        ) WITH (fillfactor = 80)
        """
    )
    op.execute(NEWER_REGISTERS)
    applied = EPOCH_US.format("applied_at")
    op.execute(
        f"""
        INSERT INTO sync_registers (user_id, entity_type, entity_id, registers, tenant_id)
        SELECT user_id, entity_type, entity_id,
               jsonb_object_agg(field, jsonb_build_array(hlc_ms, hlc_counter, node, value,
                                                         {applied})),
               min(tenant_id)
        FROM sync_field_versions
        GROUP BY user_id, entity_type, entity_id
        """
    )
    op.drop_table("sync_field_versions")
    _tenant_scoped("sync_registers")


def _tenant_scoped(table: str) -> None:
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    condition = f"tenant_id = {ACTING}"
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} USING ({condition}) WITH CHECK ({condition})"
    )


def downgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE sync_field_versions (
            user_id uuid NOT NULL,
            entity_type varchar(20) NOT NULL,
            entity_id varchar(100) NOT NULL,
            field varchar(40) NOT NULL,
            hlc_ms bigint NOT NULL,
            hlc_counter integer NOT NULL,
            node varchar(40) NOT NULL,
            value jsonb NOT NULL,
            applied_at timestamptz NOT NULL,
            tenant_id text NOT NULL DEFAULT {TENANT_DEFAULT},
            CONSTRAINT pk_sync_field_versions PRIMARY KEY (user_id, entity_type, entity_id, field),
            CONSTRAINT fk_sync_field_versions_user_id_users FOREIGN KEY (user_id)
                REFERENCES users (id) ON DELETE CASCADE
        ) WITH (fillfactor = 80)
        """
    )
    op.execute(
        """
        INSERT INTO sync_field_versions (user_id, entity_type, entity_id, field, hlc_ms,
                                         hlc_counter, node, value, applied_at, tenant_id)
        SELECT r.user_id, r.entity_type, r.entity_id, f.key, (f.value->>0)::bigint,
               (f.value->>1)::int, f.value->>2, f.value->3,
               to_timestamp((f.value->>4)::numeric / 1000000), r.tenant_id
        FROM sync_registers AS r, jsonb_each(r.registers) AS f
        """
    )
    op.drop_table("sync_registers")
    op.execute("DROP FUNCTION sync_newer_registers(jsonb, jsonb)")
    _tenant_scoped("sync_field_versions")
