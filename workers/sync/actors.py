"""Dramatiq glue for `device.sync`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.config import get_settings
from shared.jobs.catalog import DEVICE_SYNC
from shared.jobs.context import JobContext
from shared.jobs.payloads.sync import DeviceSyncPayload
from shared.messaging.actors import job_actor
from workers.sync import service


@job_actor(DEVICE_SYNC)
def sync_device(ctx: JobContext, session: Session, payload: DeviceSyncPayload) -> dict[str, Any]:
    policy = service.SyncPolicy.from_settings(get_settings())
    return service.sync_device(
        session, lambda: ctx.store, policy, user_id=ctx.user_id, payload=payload
    )
