"""Analytics exports on real PostgreSQL: every template and format read back independently,
anonymization proven by byte search, hostile content inert, cancel, expiry and schedules.

The service is called directly with an in-memory object store here; tests/integration/
test_exports_api.py drives the HTTP API, a worker process and SeaweedFS.
"""

from __future__ import annotations

import io
import threading
import uuid
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import make_session_factory, session_scope
from shared.db.models import Export, ExportSchedule
from shared.errors import JobCancelled, PermanentError
from shared.jobs.payloads.exports import ExportRequest
from shared.storage.base import ObjectNotFound
from shared.storage.memory import MemoryStore
from tests.support.exports import (
    HOSTILE,
    World,
    at,
    decompress,
    pdf_text,
    read_rows,
    seed,
)
from workers.exports import service
from workers.exports.expiry import expire_once
from workers.exports.schedules import fire_due, new_schedule
from workers.exports.service import ExportConfig, create_export
from workers.exports.submit import submit_export

pytestmark = pytest.mark.integration

NOW = at("2026-04-10T12:00:00")
MARCH = {"kind": "custom", "from": "2026-03-01", "to": "2026-03-31"}
FORMATS = ["csv", "json", "jsonl", "parquet", "xlsx", "pdf", "html"]
BUCKET = "exports-test"
CUSTOM = {"dataset": "messages", "group_by": ["author_name"], "aggregates": [{"fn": "count"}]}


@pytest.fixture(scope="module")
def sessions(db_engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(db_engine)


@pytest.fixture(scope="module")
def world(db_engine: Engine) -> World:
    return seed(db_engine)


@pytest.fixture
def store() -> MemoryStore:
    memory = MemoryStore()
    memory.ensure_bucket(BUCKET)
    return memory


@pytest.fixture
def config(migrated_db_url: str) -> ExportConfig:
    return ExportConfig(migrated_db_url, BUCKET, timedelta(days=7), b"k" * 32, pdf_max_rows=1000)


def request(template: str, fmt: str, **extra: Any) -> ExportRequest:
    body = {"template": template, "format": fmt, "range": MARCH, **extra}
    if template == "custom" and "options" not in extra:
        body["options"] = {"custom": CUSTOM}
    return ExportRequest.model_validate(body)


def submit(sessions: sessionmaker[Session], world: World, req: ExportRequest) -> uuid.UUID:
    with session_scope(sessions) as session:
        export = submit_export(session, user_id=str(world.owner), request=req, api_key_id=None)
        return export.id


def run(
    sessions: sessionmaker[Session],
    store: MemoryStore,
    config: ExportConfig,
    world: World,
    req: ExportRequest,
    checkpoint: Any = None,
) -> tuple[Export, bytes]:
    export_id = submit(sessions, world, req)
    with session_scope(sessions) as session:
        create_export(
            session,
            store,
            config,
            export_id=export_id,
            user_id=str(world.owner),
            checkpoint=checkpoint or (lambda progress, message: None),
            now=NOW,
        )
    with session_scope(sessions) as session:
        export = session.get(Export, export_id)
    assert export is not None and export.key is not None
    return export, decompress(store.get_bytes(BUCKET, export.key), req.compression.value)


def expected_rows(world: World, template: str) -> int:
    return {
        "message_analytics": len(world.march_messages),
        "task_completion": 3,
        "decision_analytics": 1,
        "user_activity": 31,
        "custom": 2,
    }[template]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "template",
    ["message_analytics", "task_completion", "decision_analytics", "user_activity", "custom"],
)
def test_every_template_and_format_reads_back(
    sessions: sessionmaker[Session],
    store: MemoryStore,
    config: ExportConfig,
    world: World,
    template: str,
    fmt: str,
    tmp_path: Path,
) -> None:
    export, data = run(sessions, store, config, world, request(template, fmt))
    assert export.status == "ready" and export.row_count == expected_rows(world, template)
    if fmt == "pdf":
        content = pdf_text(data)
        assert "2026-03-01 to 2026-03-31 (Europe/Oslo)" in content and "Page 1 of" in content
        return
    rows = read_rows(fmt, data, tmp_path)
    assert len(rows) == expected_rows(world, template)
    if template == "message_analytics":
        assert {str(r["message_id"]) for r in rows} == world.march_messages
    if template == "user_activity":
        assert sum(int(r["messages_sent"]) for r in rows) == world.owner_march_messages
        assert str(rows[0]["day"]).startswith("2026-03-01")
    if template == "custom":
        assert sum(int(r["count"]) for r in rows) == len(world.march_messages)


def test_html_report_has_summary_and_an_escaped_chart(
    sessions: sessionmaker[Session], store: MemoryStore, config: ExportConfig, world: World
) -> None:
    _, data = run(sessions, store, config, world, request("user_activity", "html"))
    document = data.decode()
    assert "<svg" in document and "Messages sent per day" in document
    assert "Content-Security-Policy" in document and "<dt>Messages sent</dt><dd>3</dd>" in document


@pytest.mark.parametrize(
    ("fmt", "compression"),
    [(f, ["none", "gzip", "zip"][i % 3]) for i, f in enumerate(FORMATS)],
)
@pytest.mark.parametrize("template", ["message_analytics", "contacts"])
def test_anonymized_exports_contain_no_identifier_anywhere(
    sessions: sessionmaker[Session],
    store: MemoryStore,
    config: ExportConfig,
    world: World,
    fmt: str,
    compression: str,
    template: str,
) -> None:
    extra: dict[str, Any] = {"anonymize": True, "compression": compression}
    if template == "contacts":
        template, extra["options"] = "custom", {"custom": {"dataset": "contacts"}}
    export, data = run(sessions, store, config, world, request(template, fmt, **extra))
    assert export.row_count
    haystack = searchable(fmt, data).lower()
    leaks = [i for i in world.identifiers if i.lower().encode() in haystack]
    assert leaks == []
    assert b"example.invalid" in haystack or b"person-" in haystack or fmt == "pdf"


def searchable(fmt: str, data: bytes) -> bytes:
    """Every byte a reader could see: XLSX members unzipped, PDF text extracted."""
    if fmt == "xlsx":
        with zipfile.ZipFile(io.BytesIO(data)) as book:
            return b"".join(book.read(name) for name in book.namelist())
    if fmt == "pdf":
        return pdf_text(data).encode()
    return data


@pytest.mark.parametrize("anonymize", [False, True])
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_formulas_come_out_as_text_in_spreadsheets(
    sessions: sessionmaker[Session],
    store: MemoryStore,
    config: ExportConfig,
    world: World,
    fmt: str,
    anonymize: bool,
    tmp_path: Path,
) -> None:
    req = request("message_analytics", fmt, anonymize=anonymize)
    _, data = run(sessions, store, config, world, req)
    bodies = [str(r["body"]) for r in read_rows(fmt, data, tmp_path)]
    dangerous = [b for b in bodies if b[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert dangerous == []
    assert '\'=HYPERLINK("http://evil.example","x")' in bodies
    assert not any("\x07" in b or "\u202e" in b for b in bodies)


def test_scripts_are_escaped_in_html_and_controls_gone_everywhere(
    sessions: sessionmaker[Session],
    store: MemoryStore,
    config: ExportConfig,
    world: World,
    tmp_path: Path,
) -> None:
    _, html = run(sessions, store, config, world, request("message_analytics", "html"))
    assert b"<script" not in html and b"&lt;script&gt;" in html
    _, jsonl = run(sessions, store, config, world, request("message_analytics", "jsonl"))
    bodies = [r["body"] for r in read_rows("jsonl", jsonl, tmp_path)]
    assert "bell and bidi exe.txt" in bodies and HOSTILE[0] in bodies  # JSON keeps text as is


def test_hostile_filter_value_is_data_not_sql(
    sessions: sessionmaker[Session],
    store: MemoryStore,
    config: ExportConfig,
    world: World,
    db_engine: Engine,
) -> None:
    hostile = "x'); DELETE FROM users; --\\"
    flt = {"column": "company", "op": "eq", "value": hostile}
    custom = {"dataset": "contacts", "filters": [flt]}
    export, _ = run(
        sessions, store, config, world, request("custom", "csv", options={"custom": custom})
    )
    assert export.row_count == 0
    with db_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() >= 2


def test_format_row_caps_fail_permanently(
    sessions: sessionmaker[Session], store: MemoryStore, config: ExportConfig, world: World
) -> None:
    tight = ExportConfig(config.database_url, BUCKET, config.ttl, None, pdf_max_rows=2)
    with pytest.raises(PermanentError) as caught:
        run(sessions, store, tight, world, request("message_analytics", "pdf"))
    assert caught.value.code == "too_many_rows"
    with pytest.raises(PermanentError) as caught:
        run(sessions, store, tight, world, request("message_analytics", "csv", anonymize=True))
    assert caught.value.code == "anonymization_unavailable"


def test_cancel_before_upload_leaves_nothing(
    sessions: sessionmaker[Session], store: MemoryStore, config: ExportConfig, world: World
) -> None:
    def cancel(progress: float, message: str | None) -> None:
        raise JobCancelled("cancelled at checkpoint")

    export_id = submit(sessions, world, request("message_analytics", "parquet"))
    with pytest.raises(JobCancelled), session_scope(sessions) as session:
        create_export(
            session,
            store,
            config,
            export_id=export_id,
            user_id=str(world.owner),
            checkpoint=cancel,
            now=NOW,
        )
    with session_scope(sessions) as session:
        export = session.get(Export, export_id)
        assert export is not None and (export.status, export.key) == ("pending", None)
    with pytest.raises(ObjectNotFound):
        name = "message_analytics-2026-03-01-2026-03-31.parquet"
        store.get_bytes(BUCKET, f"exports/{export_id}/{name}")


def test_cancel_mid_stream_stops_between_batches(
    sessions: sessionmaker[Session],
    store: MemoryStore,
    config: ExportConfig,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service, "PROGRESS_EVERY_S", 0.0)  # a checkpoint after every batch
    seen: list[str | None] = []

    def cancel_on_first_batch(progress: float, message: str | None) -> None:
        seen.append(message)
        raise JobCancelled("cancelled at checkpoint")

    export_id = submit(sessions, world, request("message_analytics", "jsonl"))
    with pytest.raises(JobCancelled), session_scope(sessions) as session:
        create_export(
            session,
            store,
            config,
            export_id=export_id,
            user_id=str(world.owner),
            checkpoint=cancel_on_first_batch,
            now=NOW,
        )
    assert seen and seen[0] is not None and "rows" in seen[0]  # stopped mid-stream
    with session_scope(sessions) as session:
        assert session.get(Export, export_id).status == "pending"  # type: ignore[union-attr]


def test_export_deleted_while_building_leaves_no_file(
    sessions: sessionmaker[Session], store: MemoryStore, config: ExportConfig, world: World
) -> None:
    export_id = submit(sessions, world, request("task_completion", "csv"))

    def delete_meanwhile(progress: float, message: str | None) -> None:
        with session_scope(sessions) as other:  # what DELETE /v1/exports/{id} does
            other.execute(
                text("UPDATE exports SET status = 'deleted' WHERE id = :id"), {"id": export_id}
            )

    with session_scope(sessions) as session:
        result = create_export(
            session,
            store,
            config,
            export_id=export_id,
            user_id=str(world.owner),
            checkpoint=delete_meanwhile,
            now=NOW,
        )
    assert result["status"] == "deleted"
    with pytest.raises(ObjectNotFound):
        store.get_bytes(BUCKET, f"exports/{export_id}/task_completion-2026-03-01-2026-03-31.csv")


def test_export_job_for_another_user_is_not_found(
    sessions: sessionmaker[Session], store: MemoryStore, config: ExportConfig, world: World
) -> None:
    """Broken on purpose once (no owner check in create_export): the export was built."""
    export_id = submit(sessions, world, request("task_completion", "csv"))
    with pytest.raises(PermanentError) as caught, session_scope(sessions) as session:
        create_export(
            session,
            store,
            config,
            export_id=export_id,
            user_id=str(uuid.uuid4()),
            checkpoint=lambda p, m: None,
            now=NOW,
        )
    assert caught.value.code == "not_found"
    with session_scope(sessions) as session:
        assert session.get(Export, export_id).status == "pending"  # type: ignore[union-attr]


def test_redelivery_after_success_returns_the_stored_file(
    sessions: sessionmaker[Session], store: MemoryStore, config: ExportConfig, world: World
) -> None:
    export, _ = run(sessions, store, config, world, request("task_completion", "csv"))
    with session_scope(sessions) as session:
        again = create_export(
            session,
            store,
            config,
            export_id=export.id,
            user_id=export.user_id,
            checkpoint=lambda p, m: None,
            now=NOW,
        )
    assert again["status"] == "ready" and again["rows"] == 3


def test_expiry_deletes_the_file_and_marks_the_export(
    sessions: sessionmaker[Session], store: MemoryStore, config: ExportConfig, world: World
) -> None:
    export, _ = run(sessions, store, config, world, request("decision_analytics", "json"))
    assert export.expires_at == NOW + timedelta(days=7) and export.key
    with session_scope(sessions) as session:
        assert expire_once(session, store, NOW + timedelta(days=6)) == 0
    with session_scope(sessions) as session:
        assert expire_once(session, store, NOW + timedelta(days=7, seconds=1)) >= 1
    with session_scope(sessions) as session:
        assert session.get(Export, export.id).status == "expired"  # type: ignore[union-attr]
    with pytest.raises(ObjectNotFound):
        store.get_bytes(BUCKET, export.key)


def test_schedule_fires_once_per_period_with_two_schedulers(
    sessions: sessionmaker[Session], world: World
) -> None:
    req = request("task_completion", "csv")
    with session_scope(sessions) as session:
        schedule = new_schedule(
            str(world.owner), "0 8 * * *", "Europe/Oslo", req, None, now=NOW - timedelta(days=1)
        )
        session.add(schedule)
    fire_at = NOW + timedelta(hours=1)
    barrier, fired = threading.Barrier(2), []

    def scheduler() -> None:
        barrier.wait()
        with session_scope(sessions) as session:
            fired.append(fire_due(session, fire_at))

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with session_scope(sessions) as session:
        count = session.execute(
            select(func.count()).where(Export.schedule_id == schedule.id)
        ).scalar_one()
        row = session.get(ExportSchedule, schedule.id)
        assert row is not None
        # 08:00 in Oslo on April 11 is 06:00 UTC (summer time).
        assert row.next_run_at == at("2026-04-11T06:00:00")
    assert count == 1
    with session_scope(sessions) as session:
        assert fire_due(session, fire_at) == 0  # same period again: nothing
