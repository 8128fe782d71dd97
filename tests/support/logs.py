"""Read the JSON log lines the processes of a `Stack` wrote (CONVEYOR_LOG_JSON=true)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.stack import Stack


def log_events(stack: Stack, prefix: str = "", **fields: Any) -> list[dict[str, Any]]:
    """Events from the logs whose file name starts with `prefix`, matching every `fields`."""
    found = []
    for path in sorted(Path(stack.logs).glob(f"{prefix}*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a killed process
                continue
            if all(event.get(k) == v for k, v in fields.items()):
                found.append(event)
    return found
