"""Payloads of the file kinds (issue #3): messages carry ids, never file bodies."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict


class ProcessUploadPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    upload_id: uuid.UUID


class ThumbnailPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    file_id: uuid.UUID


class DeleteFilePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    file_id: uuid.UUID
