"""Payload of `device.sync` (issue #10). Messages carry ids, never the changes themselves:
inline batches are staged in `sync_batches` by the ingress, large ones are uploaded to S3."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field


class DeviceSyncPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    device_id: uuid.UUID
    batch_id: uuid.UUID
    cursor: str | None = Field(default=None, max_length=512)
    # False: the changes were staged with the batch (sync_batches.changes); True: the batch
    # was PUT to its presigned upload URL.
    uploaded: bool = False
