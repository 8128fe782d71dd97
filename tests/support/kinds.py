"""Test-only job kinds that leave no trace in the process-wide catalogue and actor registry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from shared.jobs import catalog
from shared.messaging import actors


@contextmanager
def restored_registries() -> Iterator[None]:
    """Snapshot the kind catalogue and the handler registry, restore them on exit: kinds a
    test registers never leak into tests that list every kind (test_catalog_and_actors)."""
    specs = dict(catalog._SPECS)
    handlers = dict(actors._HANDLERS)
    try:
        yield
    finally:
        catalog._SPECS.clear()
        catalog._SPECS.update(specs)
        actors._HANDLERS.clear()
        actors._HANDLERS.update(handlers)
