"""Payload of `device.sync` (issue #10). Changes stay raw JSON here: the job validates each
one on its own, so one bad change is rejected with a reason while the rest still apply."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DeviceSyncPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    device_id: uuid.UUID
    batch_id: uuid.UUID
    cursor: str | None = Field(default=None, max_length=512)
    # Inline changes, or `uploaded`: the batch was PUT to its presigned upload URL.
    changes: list[Any] | None = None
    uploaded: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> DeviceSyncPayload:
        if self.uploaded == (self.changes is not None):
            raise ValueError("send either changes or uploaded=true")
        return self
