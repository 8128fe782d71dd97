"""What `conveyor dev` leaves in its data directory for the rest of the CLI to find.

- `env`: `export CONVEYOR_…` lines (database, S3, key ring, broker, public URL), written
  once the stack is up and removed when it stops; every `conveyor` command reads it for
  variables the environment does not set, so the CLI reaches the dev stack with no set-up.
- `dev.lock` (held with flock while running) and `dev.json` (pid, URL): a second
  `conveyor dev` on the same directory says where the first one runs instead of failing.
- `master_keys`: a development key ring, generated once, so OAuth connections work in dev.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import shlex
from pathlib import Path
from typing import IO, Any

ENV_FILE = "env"
EXPORTED = (
    "CONVEYOR_DATABASE_URL",
    "CONVEYOR_BROKER_URL",
    "CONVEYOR_S3_ENDPOINT",
    "CONVEYOR_S3_ACCESS_KEY",
    "CONVEYOR_S3_SECRET_KEY",
    "CONVEYOR_BUCKET_PREFIX",
    "CONVEYOR_RABBITMQ_API_URL",
    "CONVEYOR_MASTER_KEYS",
    "CONVEYOR_PUBLIC_URL",
)


def data_dir() -> Path:
    return Path(os.environ.get("CONVEYOR_DATA_DIR", ".conveyor"))


_loaded: list[str] = []  # names load_dev_env set, so `conveyor dev` can ignore a stale file


def find_env_file() -> Path | None:
    """$CONVEYOR_DATA_DIR/env, or the nearest `.conveyor/env` here or above (as git does)."""
    if "CONVEYOR_DATA_DIR" in os.environ:
        path = data_dir() / ENV_FILE
        return path if path.is_file() else None
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / ".conveyor" / ENV_FILE).is_file():
            return folder / ".conveyor" / ENV_FILE
    return None


def load_dev_env(directory: Path | None = None) -> Path | None:
    """Fill unset CONVEYOR_* variables from a running `conveyor dev`; the environment wins."""
    from dotenv import dotenv_values

    path = directory / ENV_FILE if directory is not None else find_env_file()
    if path is None or not path.is_file():
        return None
    for name, value in dotenv_values(path).items():
        if name.startswith("CONVEYOR_") and value is not None and name not in os.environ:
            os.environ[name] = value
            _loaded.append(name)
    return path


def unload_dev_env() -> None:
    """`conveyor dev` itself starts from the real environment, never from a previous run."""
    while _loaded:
        os.environ.pop(_loaded.pop(), None)


def export_lines() -> list[str]:
    return [f"export {n}={shlex.quote(os.environ[n])}" for n in EXPORTED if os.environ.get(n)]


def write_env(directory: Path) -> Path:
    path = directory / ENV_FILE
    header = f"# written by `conveyor dev` (pid {os.getpid()}); removed when it stops\n"
    path.write_text(header + "\n".join(export_lines()) + "\n")
    path.chmod(0o600)
    return path


def remove_env(directory: Path) -> None:
    (directory / ENV_FILE).unlink(missing_ok=True)


class AlreadyRunning(Exception):
    def __init__(self, url: str, pid: int) -> None:
        super().__init__(f"conveyor dev is already running at {url} (pid {pid})")
        self.url = url
        self.pid = pid


def acquire_lock(directory: Path) -> IO[str]:
    """Held until the process exits (the kernel releases it however the process dies)."""
    handle = (directory / "dev.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        info = _read_info(directory)
        raise AlreadyRunning(
            str(info.get("url", "an unknown URL")), int(info.get("pid", 0))
        ) from None
    return handle


def write_info(directory: Path, url: str) -> None:
    (directory / "dev.json").write_text(json.dumps({"pid": os.getpid(), "url": url}))


def _read_info(directory: Path) -> dict[str, Any]:
    try:
        info = json.loads((directory / "dev.json").read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def dev_master_keys(directory: Path) -> str:
    """A key ring for development only, kept so connections stay readable across restarts."""
    path = directory / "master_keys"
    if path.exists():
        return path.read_text().strip()
    ring = "dev1:" + base64.b64encode(secrets.token_bytes(32)).decode()
    path.write_text(ring + "\n")
    path.chmod(0o600)
    return ring
