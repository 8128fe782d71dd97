"""Payload of the built-in `diag.noop` kind (smoke tests, canaries, benchmarks)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class NoopPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    sleep_ms: int = Field(default=0, ge=0, le=600_000)
    fail_times: int = Field(default=0, ge=0, le=100, description="fail the first N attempts")
    fail_permanently: bool = Field(default=False, description="raise a PermanentError")
    store_roundtrip: bool = Field(
        default=False, description="write then read roundtrip/<job id> in the diag bucket"
    )

    def declared_work_s(self) -> float:
        """Worker time the payload asks for; must stay below the kind's time limit."""
        return self.sleep_ms / 1000
