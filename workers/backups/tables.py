"""The data types a backup can hold: one per product table, with its owner and key columns.

Parents come before children (restore inserts in this order, so foreign keys resolve).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableSpec:
    name: str
    owner: str  # the column that holds the user's id: a backup holds the rows where it = user
    key: tuple[str, ...]


TABLES: tuple[TableSpec, ...] = (
    TableSpec("users", "id", ("id",)),
    TableSpec("channels", "owner_id", ("id",)),
    TableSpec("channel_members", "user_id", ("channel_id", "user_id")),
    TableSpec("messages", "author_id", ("id",)),
    TableSpec("contacts", "owner_id", ("id",)),
    TableSpec("user_settings", "user_id", ("user_id", "key")),
    TableSpec("tasks", "user_id", ("id",)),
    TableSpec("decisions", "user_id", ("id",)),
)
BY_NAME = {spec.name: spec for spec in TABLES}
DATA_TYPES: tuple[str, ...] = tuple(BY_NAME)


def normalize(data_types: list[str] | None) -> list[str]:
    """The chosen data types in canonical (parent-first) order; None means all of them."""
    if not data_types:
        return list(DATA_TYPES)
    unknown = sorted(set(data_types) - set(DATA_TYPES))
    if unknown:
        raise ValueError(f"unknown data types {unknown}; known: {list(DATA_TYPES)}")
    return [name for name in DATA_TYPES if name in data_types]
