"""Shared fixtures. Integration fixtures use real PostgreSQL, RabbitMQ and SeaweedFS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine

from shared.db.engine import make_engine
from shared.embedded import EmbeddedS3, start_seaweedfs
from tests.support.services import create_database, drop_database
from tests.support.stack import Stack

# A busy 2-core CI box makes single examples slow now and then: no per-example deadline
# (Hypothesis's 200 ms default flakes there), a fixed example count so runs cost the same.
settings.register_profile(
    "conveyor",
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("conveyor")


@pytest.fixture(scope="session")
def migrated_db_url() -> Iterator[str]:
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def db_engine(migrated_db_url: str) -> Iterator[Engine]:
    engine = make_engine(migrated_db_url, pool_size=5)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Database + vhost + topology, no processes; tests start the ones they need."""
    logs: Path = tmp_path_factory.mktemp("logs")
    created = Stack.create(logs)
    yield created
    created.close()


@pytest.fixture
def fresh_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack of its own for one test (fault and shutdown tests: no processes or logs shared)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    created = Stack.create(logs)
    yield created
    created.close()
