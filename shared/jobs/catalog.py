"""Every job kind Conveyor knows: pool, payload schema, attempts, time limit, priority.

Ingress validates against this and workers run from it, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from shared.errors import UnknownKind
from shared.jobs.payloads.backups import CreateBackupPayload, RestoreBackupPayload
from shared.jobs.payloads.diag import NoopPayload
from shared.jobs.payloads.exports import ExportPayload
from shared.jobs.payloads.files import DeleteFilePayload, ProcessUploadPayload, ThumbnailPayload
from shared.jobs.payloads.oauth import RefreshPayload
from shared.jobs.payloads.sync import DeviceSyncPayload
from shared.messaging.names import Pool, Priority


@dataclass(frozen=True)
class KindSpec:
    kind: str
    pool: Pool
    payload_model: type[BaseModel]
    max_attempts: int
    time_limit_s: float
    default_priority: Priority = Priority.NORMAL
    backoff_base_s: float = 2.0
    backoff_max_s: float = 600.0
    supported_versions: frozenset[int] = frozenset({1})
    # Internal kinds (file.delete, oauth.refresh, ...) are submitted by Conveyor's own services,
    # which check ownership first; the public API refuses them.
    public: bool = True
    # Terminal states announced on `conveyor.events` (a public contract: external services
    # bind job.# and friends; nothing inside Conveyor consumes them). CONVEYOR_COMPLETION_EVENTS
    # overrides this per kind.
    completion_events: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "dead"})


_SPECS: dict[str, KindSpec] = {}


def register(spec: KindSpec) -> KindSpec:
    if spec.kind in _SPECS and _SPECS[spec.kind] != spec:
        raise ValueError(f"kind {spec.kind!r} registered twice with different specs")
    _SPECS[spec.kind] = spec
    return spec


def get_spec(kind: str) -> KindSpec:
    try:
        return _SPECS[kind]
    except KeyError:
        raise UnknownKind(f"unknown job kind {kind!r}", kind=kind) from None


def all_specs() -> list[KindSpec]:
    return sorted(_SPECS.values(), key=lambda s: s.kind)


DIAG_NOOP = register(
    KindSpec(
        kind="diag.noop",
        pool=Pool.DEFAULT,
        payload_model=NoopPayload,
        max_attempts=3,
        time_limit_s=60,
        backoff_base_s=0.5,
        backoff_max_s=30,
    )
)

UPLOAD_PROCESS = register(
    KindSpec(
        kind="upload.process",
        pool=Pool.MEDIA,
        payload_model=ProcessUploadPayload,
        max_attempts=5,
        time_limit_s=300,
        backoff_base_s=2,
        backoff_max_s=300,
        public=False,
    )
)

IMAGE_THUMBNAIL = register(
    KindSpec(
        kind="image.thumbnail",
        pool=Pool.MEDIA,
        payload_model=ThumbnailPayload,
        max_attempts=5,
        time_limit_s=120,
        backoff_base_s=2,
        backoff_max_s=300,
        public=False,
    )
)

FILE_DELETE = register(
    KindSpec(
        kind="file.delete",
        pool=Pool.MEDIA,
        payload_model=DeleteFilePayload,
        max_attempts=8,
        time_limit_s=60,
        backoff_base_s=2,
        backoff_max_s=600,
        public=False,
    )
)

OAUTH_REFRESH = register(
    KindSpec(
        kind="oauth.refresh",
        pool=Pool.OAUTH,
        payload_model=RefreshPayload,
        max_attempts=8,
        time_limit_s=60,
        backoff_base_s=2,
        backoff_max_s=300,
        public=False,
    )
)

# Internal: the backups API and the scheduler create the `backups` row, then submit these.
BACKUP_CREATE = register(
    KindSpec(
        kind="backup.create",
        pool=Pool.BACKUP,
        payload_model=CreateBackupPayload,
        max_attempts=5,
        time_limit_s=3600,
        default_priority=Priority.BULK,
        backoff_base_s=5,
        backoff_max_s=600,
        public=False,
    )
)

BACKUP_RESTORE = register(
    KindSpec(
        kind="backup.restore",
        pool=Pool.BACKUP,
        payload_model=RestoreBackupPayload,
        max_attempts=5,
        time_limit_s=3600,
        backoff_base_s=5,
        backoff_max_s=600,
        public=False,
    )
)

# Internal: POST /v1/exports and export schedules create the export row, then this job.
EXPORT_CREATE = register(
    KindSpec(
        kind="export.create",
        pool=Pool.EXPORT,
        payload_model=ExportPayload,
        max_attempts=3,
        time_limit_s=1800,
        backoff_base_s=5,
        backoff_max_s=300,
        public=False,
    )
)

DEVICE_SYNC = register(
    KindSpec(
        kind="device.sync",
        pool=Pool.SYNC,
        payload_model=DeviceSyncPayload,
        max_attempts=5,
        time_limit_s=300,
        default_priority=Priority.INTERACTIVE,
        backoff_base_s=1,
        backoff_max_s=60,
        public=False,  # submitted by POST /v1/devices/{id}/sync after checking the device secret
    )
)
