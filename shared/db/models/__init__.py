"""All tables, imported here so Alembic and tests see one complete metadata."""

from shared.db.models.jobs import ApiKey, Job, JobEvent, OutboxMessage

__all__ = ["ApiKey", "Job", "JobEvent", "OutboxMessage"]
