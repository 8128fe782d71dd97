"""A 1M-row export stays under the memory bound (issue #9: peak RSS < 300 MB).

One export of 1M message rows as JSON lines (the format that turns the most rows into Python
objects) in a child process, against real PostgreSQL and SeaweedFS; the child reports its own
peak RSS, imports included. Asserts memory only, never time.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from shared.db.engine import make_engine, make_session_factory, session_scope
from shared.embedded import EmbeddedS3
from shared.jobs.payloads.exports import ExportRequest
from shared.storage.s3 import S3Store
from tests.support.exports import seed_messages
from tests.support.services import create_database, drop_database
from workers.exports.submit import submit_export

pytestmark = pytest.mark.integration

ROWS = 1_000_000
BOUND_MB = 300


@pytest.fixture
def database() -> Iterator[str]:
    url = create_database("conveyor_test_exports_mem")
    yield url
    drop_database(url)


@pytest.mark.timeout(900)  # ~2 minutes on a busy 2-core box: seeding 1M rows, then the export
def test_a_million_row_export_stays_under_the_memory_bound(
    database: str, s3_server: EmbeddedS3
) -> None:
    engine = make_engine(database, pool_size=1)
    user = seed_messages(engine, ROWS)
    request = ExportRequest.model_validate(
        {
            "template": "message_analytics",
            "format": "jsonl",
            "range": {"kind": "custom", "from": "2026-03-01", "to": "2026-03-31"},
        }
    )
    with session_scope(make_session_factory(engine)) as session:
        export = submit_export(session, user_id=str(user), request=request, api_key_id=None)
        export_id = export.id
    engine.dispose()
    bucket = "memory-bound-exports"
    S3Store.connect(s3_server.endpoint, s3_server.access_key, s3_server.secret_key).ensure_bucket(
        bucket
    )
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.export_child",
            database,
            s3_server.endpoint,
            s3_server.access_key,
            s3_server.secret_key,
            bucket,
            str(export_id),
        ],
        capture_output=True,
        text=True,
        timeout=800,
        check=True,
    )
    rows, peak_kb = (int(v) for v in child.stdout.split()[-2:])
    assert rows == ROWS
    print(f"peak RSS of a {rows:,}-row JSON lines export: {peak_kb / 1024:.0f} MB")
    assert peak_kb / 1024 < BOUND_MB, f"peak RSS {peak_kb / 1024:.0f} MB"
