"""All tables, imported here so Alembic and tests see one complete metadata."""

from shared.db.models.audit import AuditEvent
from shared.db.models.backups import Backup, BackupSettings
from shared.db.models.exports import Export, ExportSchedule
from shared.db.models.files import StoredFile, Upload, UserStorage
from shared.db.models.jobs import (
    ApiKey,
    Job,
    JobEvent,
    OutboxMessage,
    PeriodicRun,
    RateLimitBucket,
    Tenant,
)
from shared.db.models.oauth import OAuthConnection, OAuthState
from shared.db.models.product import (
    Channel,
    ChannelMember,
    Contact,
    Decision,
    Message,
    Task,
    User,
    UserSetting,
)
from shared.db.models.sync import (
    SyncBatch,
    SyncConflict,
    SyncDevice,
    SyncRegisters,
    SyncSettings,
)

__all__ = [
    "ApiKey",
    "AuditEvent",
    "Backup",
    "BackupSettings",
    "Channel",
    "ChannelMember",
    "Contact",
    "Decision",
    "Export",
    "ExportSchedule",
    "Job",
    "JobEvent",
    "Message",
    "OAuthConnection",
    "OAuthState",
    "OutboxMessage",
    "PeriodicRun",
    "RateLimitBucket",
    "StoredFile",
    "SyncBatch",
    "SyncConflict",
    "SyncDevice",
    "SyncRegisters",
    "SyncSettings",
    "Task",
    "Tenant",
    "Upload",
    "User",
    "UserSetting",
    "UserStorage",
]
