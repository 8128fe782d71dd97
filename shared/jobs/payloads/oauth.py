"""Payload of `oauth.refresh`."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field


class RefreshPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    connection_id: uuid.UUID
    force: bool = Field(default=False, description="refresh even if the token is still fresh")
