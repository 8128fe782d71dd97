"""`conveyor dev`: everything in one process for a newcomer."""

from __future__ import annotations


def dev() -> None:
    """Run migrations, ingress, scheduler and workers on embedded defaults."""
    raise NotImplementedError
