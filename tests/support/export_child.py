"""Run one export in this process and print its peak RSS (kB): `python -m tests.support.export_child
DB_URL S3_ENDPOINT ACCESS SECRET BUCKET EXPORT_ID`. Used by the memory-bound test, so the
figure is this export's alone and not the test runner's."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta

from shared.db.engine import make_engine, make_session_factory, session_scope
from shared.db.repos import exports as exports_repo
from shared.storage.s3 import S3Store
from workers.exports.service import ExportConfig, create_export


def main(db_url: str, endpoint: str, access: str, secret: str, bucket: str, export_id: str) -> None:
    store = S3Store.connect(endpoint, access, secret)
    config = ExportConfig(db_url, bucket, timedelta(days=7), None, pdf_max_rows=1000)
    engine = make_engine(db_url, pool_size=1)
    with session_scope(make_session_factory(engine)) as session:
        export = exports_repo.get(session, uuid.UUID(export_id))
        assert export is not None, export_id
        result = create_export(
            session,
            store,
            config,
            export_id=export.id,
            user_id=export.user_id,
            checkpoint=lambda progress, message: None,
            now=datetime.now(UTC),
        )
    engine.dispose()
    print(result["rows"], peak_rss_kb())


def peak_rss_kb() -> int:
    """VmHWM: this process's own high-water mark. (getrusage's ru_maxrss survives execve, so
    it would report the parent's size when the parent, e.g. pytest, is the larger.)"""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    main(*sys.argv[1:7])
