"""What a running job sees: its identity, typed payload, and progress/cancel checkpoints."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import session_scope
from shared.db.repos import jobs as jobs_repo
from shared.db.tenancy import DEFAULT_TENANT
from shared.errors import JobCancelled
from shared.storage.base import ObjectStore


class LostOwnership(Exception):
    """Another attempt owns the job now (reaped or redelivered): stop without writing."""


@dataclass
class JobContext:
    job_id: uuid.UUID
    kind: str
    user_id: str
    attempt: int
    max_attempts: int
    sessions: sessionmaker[Session]  # scoped to the job's tenant (RLS) by the runner
    store_factory: Callable[[], ObjectStore] | None = None
    tenant_id: str = DEFAULT_TENANT

    @property
    def store(self) -> ObjectStore:
        """The process's object store, built on first use (kinds without files never do)."""
        if self.store_factory is None:
            raise RuntimeError("this runner has no object store configured")
        return self.store_factory()

    def checkpoint(self, progress: float, message: str | None = None) -> None:
        """Record progress (0..1) in its own transaction and stop here if cancel was requested."""
        with session_scope(self.sessions) as session:
            cancel = jobs_repo.checkpoint(
                session,
                self.job_id,
                attempt=self.attempt,
                progress=min(1.0, max(0.0, progress)),
                message=message,
            )
        if cancel is None:
            raise LostOwnership(str(self.job_id))
        if cancel:
            raise JobCancelled("cancelled at checkpoint", job_id=self.job_id)

    def log_fields(self) -> dict[str, Any]:
        return {
            "job_id": str(self.job_id),
            "kind": self.kind,
            "user_id": self.user_id,
            "tenant_id": self.tenant_id,
        }
