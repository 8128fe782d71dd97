"""Payloads of `backup.create` and `backup.restore` (issue #8): ids and plain values only."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CreateBackupPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    backup_id: uuid.UUID = Field(description="the pending `backups` row to fill")


class RestoreBackupPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    backup_id: uuid.UUID = Field(description="the restore point: a completed backup")
    mode: Literal["replace", "merge"] = "replace"
    dry_run: bool = Field(default=False, description="count what would change, change nothing")
