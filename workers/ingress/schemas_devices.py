"""Request and response bodies of /v1/devices (device registry, sync, conflicts, settings)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.db.models import SyncConflict, SyncDevice
from shared.db.models.sync import SYNC_TYPES
from workers.ingress.schemas import JsonInt

SyncType = Literal["contact", "task", "decision", "setting", "channel", "message"]  # = SYNC_TYPES


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: uuid.UUID
    name: str = Field(min_length=1, max_length=200)
    platform: str = Field(min_length=1, max_length=50)


class RenameIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)


class DeviceOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    platform: str
    created_at: datetime
    revoked_at: datetime | None
    last_sync_at: datetime | None

    @classmethod
    def of(cls, device: SyncDevice) -> DeviceOut:
        return cls(
            id=device.id,
            user_id=device.user_id,
            name=device.name,
            platform=device.platform,
            created_at=device.created_at,
            revoked_at=device.revoked_at,
            last_sync_at=device.last_sync_at,
        )


class DeviceCreated(DeviceOut):
    secret: str  # shown once; only its hash is stored


class DevicePage(BaseModel):
    devices: list[DeviceOut]


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: uuid.UUID
    types: list[SyncType] = Field(max_length=len(SYNC_TYPES))
    interval_s: JsonInt = Field(ge=10, le=7 * 24 * 3600)

    @model_validator(mode="after")
    def _messages_bring_channels(self) -> SettingsIn:
        # A device learns that it left a channel (and must drop its messages) from the channel:
        # syncing messages turns channel sync on too (a valid request is never refused for it).
        if "message" in self.types and "channel" not in self.types:
            self.types = [*self.types, "channel"]
        return self


class SettingsOut(BaseModel):
    user_id: uuid.UUID
    types: list[str]
    interval_s: int


class SyncIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_id: uuid.UUID
    cursor: str | None = Field(default=None, max_length=512)
    changes: list[Any] | None = None
    uploaded: bool = Field(default=False, strict=True)


class SyncAccepted(BaseModel):
    job_id: uuid.UUID
    batch_id: uuid.UUID


class UploadSlot(BaseModel):
    batch_id: uuid.UUID
    method: str = "PUT"
    url: str
    expires_at: datetime


class SyncJobOut(BaseModel):
    job_id: uuid.UUID
    state: str
    error_code: str | None
    error_message: str | None
    result: dict[str, Any] | None


class ConflictOut(BaseModel):
    id: int
    device_id: uuid.UUID | None
    type: str
    entity_id: str
    field: str
    lost_value: Any
    lost_hlc: str
    lost_node: str
    winner_hlc: str
    winner_node: str
    reason: str
    created_at: datetime
    resolved_at: datetime | None = None
    resolution: str | None = None  # "restored" or "dismissed"

    @classmethod
    def of(cls, row: SyncConflict) -> ConflictOut:
        return cls(
            id=row.id,
            device_id=row.device_id,
            type=row.entity_type,
            entity_id=row.entity_id,
            field=row.field,
            lost_value=row.lost_value,
            lost_hlc=row.lost_hlc,
            lost_node=row.lost_node,
            winner_hlc=row.winner_hlc,
            winner_node=row.winner_node,
            reason=row.reason,
            created_at=row.created_at,
            resolved_at=row.resolved_at,
            resolution=row.resolution,
        )


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["restore", "dismiss"]


class ConflictPage(BaseModel):
    conflicts: list[ConflictOut]
    next_after: int | None
