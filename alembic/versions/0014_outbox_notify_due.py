"""outbox NOTIFY only for rows due within a second

Revision ID: 0014_outbox_notify_due
Revises: 0013_sync_registers

The submit hand-off (shared/messaging/handoff.py) writes outbox rows due only seconds later:
its submitter publishes them itself. Woken by each such commit, the relay found nothing due
and asked when the next row was (two queries per submit, and its gathering of completion
events broken up under a steady load). The trigger now notifies only when a new row is due
within a second of the insert (the clock's time, not the transaction's start: a row that a
long transaction computed from the clock still wakes it); a row due later is found by the
relay's poll (`CONVEYOR_RELAY_IDLE_POLL_S`, 1 s), which then sleeps until it is due.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014_outbox_notify_due"
down_revision: str | None = "0013_sync_registers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE OR REPLACE FUNCTION conveyor_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT FROM new_rows
                       WHERE publish_after <= clock_timestamp() + interval '1 second')
            THEN
                PERFORM pg_notify('conveyor_outbox', '');
            END IF;
            RETURN NULL;
        END $$;
        DROP TRIGGER outbox_notify ON outbox;
        CREATE TRIGGER outbox_notify AFTER INSERT ON outbox REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION conveyor_outbox_notify();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        CREATE OR REPLACE FUNCTION conveyor_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('conveyor_outbox', '');
            RETURN NULL;
        END $$;
        DROP TRIGGER outbox_notify ON outbox;
        CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
            FOR EACH STATEMENT EXECUTE FUNCTION conveyor_outbox_notify();
        """
    )
