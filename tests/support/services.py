"""Real services for integration tests: a fresh database and a fresh RabbitMQ vhost each.

Nothing here skips: a missing service is an error, so CI fails loudly.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable

import psycopg

from shared.db.engine import normalize_url
from shared.db.migrations import upgrade_to_head

PG_ADMIN_URL = os.environ.get(
    "CONVEYOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_BASE_URL = os.environ.get("CONVEYOR_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
AMQP_USER = os.environ.get("CONVEYOR_TEST_AMQP_USER", "guest")


def create_database(prefix: str = "conveyor_test") -> str:
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = normalize_url(f"{base}/{name}")
    upgrade_to_head(url)
    return url


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rabbitmqctl(*args: str) -> str:
    result = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


def create_vhost() -> tuple[str, str]:
    vhost = f"conveyor-test-{secrets.token_hex(4)}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, AMQP_USER, ".*", ".*", ".*")
    return vhost, f"{AMQP_BASE_URL}/{vhost}"


def delete_vhost(vhost: str) -> None:
    rabbitmqctl("delete_vhost", vhost)


def wait_for(
    predicate: Callable[[], object],
    *,
    timeout: float = 30,
    interval: float = 0.1,
    what: str = "condition",
) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
