"""Dramatiq glue for the diag kinds."""

from __future__ import annotations

from shared.jobs.catalog import DIAG_NOOP
from shared.messaging.actors import job_actor
from workers.diag import service

job_actor(DIAG_NOOP)(service.noop)
