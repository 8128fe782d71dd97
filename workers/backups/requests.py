"""Asking for a backup or a restore: the row and its job in the caller's transaction.

Used by the HTTP API and the scheduler; imports no actors, so the ingress may import it.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from shared.db.models import Backup
from shared.db.repos import backups as backups_repo
from shared.db.tenancy import DEFAULT_TENANT, tenant_of
from shared.jobs.submit import NewJob, submit_jobs
from workers.backups.tables import normalize


def request_backup(
    session: Session,
    user_id: uuid.UUID,
    *,
    type: str,
    data_types: list[str] | None,
    api_key_id: uuid.UUID | None,
    scheduled: bool = False,
    source: str = "ingress",
    tenant_id: str | None = None,
) -> Backup:
    """`tenant_id`: by default the session's (a request); the scheduler passes the settings'."""
    tenant = tenant_id or tenant_of(session) or DEFAULT_TENANT
    backup = backups_repo.add(
        session,
        Backup(
            id=uuid.uuid4(),
            tenant_id=tenant,
            user_id=user_id,
            api_key_id=api_key_id,
            requested_type=type,
            type=type,
            data_types=normalize(data_types),
            status="pending",
            restore_job_ids=[],
            scheduled=scheduled,
        ),
    )
    new = NewJob("backup.create", str(user_id), {"backup_id": str(backup.id)})
    [outcome] = submit_jobs(session, [new], source=source, api_key_id=api_key_id, tenant_id=tenant)
    backup.job_id = outcome.job_id
    return backup


def request_restore(
    session: Session,
    backup: Backup,
    *,
    mode: str,
    dry_run: bool,
    api_key_id: uuid.UUID | None,
) -> uuid.UUID:
    payload = {"backup_id": str(backup.id), "mode": mode, "dry_run": dry_run}
    new = NewJob("backup.restore", str(backup.user_id), payload)
    [outcome] = submit_jobs(
        session, [new], source="ingress", api_key_id=api_key_id, tenant_id=backup.tenant_id
    )
    backups_repo.add_restore_job(session, backup.id, outcome.job_id)
    return outcome.job_id
