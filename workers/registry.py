"""Every job package's actors module; importing one registers its handlers."""

from __future__ import annotations

import importlib

ACTOR_MODULES = (
    "workers.diag.actors",
    "workers.uploads.actors",
    "workers.thumbnails.actors",
    "workers.oauth_tokens.actors",
    "workers.backups.actors",
    "workers.exports.actors",
    "workers.sync.actors",
)


def import_actor_modules() -> None:
    for module in ACTOR_MODULES:
        importlib.import_module(module)
