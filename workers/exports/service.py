"""`export.create`: stream a template's rows from PostgreSQL into a file in the exports bucket.

Idempotent by construction: the object key is derived from the export id, the file is built
in a temporary directory and uploaded only when complete, and the export row becomes
`ready` in the job's own transaction. A redelivery after success returns the stored result;
a cancel or failure before the upload leaves nothing behind.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import structlog
from sqlalchemy.orm import Session

from shared.db.models import Export
from shared.db.repos import exports as exports_repo
from shared.errors import PermanentError
from shared.jobs.payloads.exports import ExportFormat, ExportRequest
from shared.storage.base import ObjectStore
from workers.exports import ranges
from workers.exports.anonymize import Pseudonymizer
from workers.exports.compression import CONTENT_TYPE, SUFFIX, open_sink
from workers.exports.datasets import Scope
from workers.exports.errors import ExportNotFound, TooManyRows
from workers.exports.formats import (
    CONTENT_TYPES,
    EXTENSIONS,
    SPREADSHEET_FORMATS,
    Report,
    open_writer,
)
from workers.exports.formats.base import XLSX_MAX_ROWS
from workers.exports.neutralize import defuse_formulas, strip_controls
from workers.exports.templates import OutCol, Plan, plan

log = structlog.get_logger("exports")

Checkpoint = Callable[[float, str | None], None]
PROGRESS_EVERY_S = 1.0
REPORT_FORMATS = frozenset({ExportFormat.XLSX, ExportFormat.PDF, ExportFormat.HTML})
CHART_POINTS = 400
PRESIGN_MAX = timedelta(days=7)  # S3 signature v4 limit


@dataclass(frozen=True)
class ExportConfig:
    database_url: str
    bucket: str
    ttl: timedelta
    pseudonym_key: bytes | None
    pdf_max_rows: int


@dataclass(frozen=True)
class Prepared:
    """Everything decided before the first row is read."""

    request: ExportRequest
    window: ranges.Resolved
    plan: Plan
    report: Report
    pseudo: Pseudonymizer | None
    total: int  # exact for report formats, the planner's estimate for data formats


def create_export(
    session: Session,
    store: ObjectStore,
    config: ExportConfig,
    *,
    export_id: uuid.UUID,
    user_id: str,
    checkpoint: Checkpoint,
    now: datetime,
) -> dict[str, Any]:
    # No row lock while streaming: the runner already fences attempts, and a lock would make
    # DELETE /v1/exports/{id} wait for the whole export. `mark_ready` is conditional instead.
    export = exports_repo.get(session, export_id)
    if export is None or export.user_id != user_id:  # another user's export: "not found"
        raise ExportNotFound("no such export", export_id=export_id)
    if export.status != "pending":  # redelivered after success, or removed meanwhile
        return result_of(export, store)
    ready = prepare(session, export, config, now)
    request, window = ready.request, ready.window
    filename = _filename(request, window)
    key = f"exports/{export_id}/{filename}"
    content_type = CONTENT_TYPE.get(request.compression, CONTENT_TYPES[request.format])
    with tempfile.TemporaryDirectory(prefix="conveyor-export-") as work:
        path = Path(work) / filename
        rows = write_file(config.database_url, ready, path, checkpoint)
        checkpoint(0.99, "uploading")  # last chance to cancel before anything is stored
        size = path.stat().st_size
        with path.open("rb") as body:
            store.put(config.bucket, key, body, size, content_type=content_type)
    stored = exports_repo.mark_ready(
        session,
        export_id,
        bucket=config.bucket,
        key=key,
        filename=filename,
        content_type=content_type,
        size=size,
        row_count=rows,
        range_start=window.start,
        range_end=window.end,
        timezone=window.timezone,
        completed_at=now,
        expires_at=now + config.ttl,
    )
    session.refresh(export)
    if not stored:  # deleted while it was being built: the file must not outlive the row
        store.delete(config.bucket, key)
        log.info("exports.file_discarded", export_id=str(export_id), status=export.status)
        return result_of(export, store)
    log.info("exports.file_written", export_id=str(export_id), rows=rows, bytes=size)
    return result_of(export, store)


def prepare(session: Session, export: Export, config: ExportConfig, now: datetime) -> Prepared:
    """Resolve the range, plan the query, and (for reports) compute the figures up front."""
    request = ExportRequest.model_validate(export.request)
    # Looked up even when the request names a time zone: it also proves the user is this
    # tenant's (the rows are read over an owner connection, outside row-level security).
    stored_timezone = _user_timezone(session, export.user_id)
    timezone = request.options.timezone or stored_timezone
    window = ranges.resolve(request.range, timezone, now)
    scope = Scope(_product_user(export.user_id), window.start, window.end, timezone)
    the_plan = plan(request, scope, title=request.options.title)
    pseudo = _pseudonymizer(request, config, export.id)
    figures: list[tuple[str, Any]] = []
    if request.format in REPORT_FORMATS:  # a report opens with its figures and row count
        figures = exports_repo.figures(session, the_plan.summary)
        total = int(figures[0][1])
        _check_size(request.format, total, config)
    else:  # data files carry no summary: the planner's estimate is enough for progress
        total = exports_repo.estimated_rows(session, the_plan.statement)
    report = Report(
        title=the_plan.title,
        range_label=window.label,
        generated_at=now.astimezone(ranges.zone(timezone)).replace(tzinfo=None),
        columns=[(c.name, c.type) for c in the_plan.columns],
        summary=figures,
        chart=the_plan.chart,
        chart_points=_chart_points(session, the_plan, pseudo) if figures else [],
        anonymized=pseudo is not None,
    )
    return Prepared(request, window, the_plan, report, pseudo, total)


def write_file(database_url: str, ready: Prepared, path: Path, checkpoint: Checkpoint) -> int:
    """Stream the plan's rows into `path` in the requested format; returns the row count."""
    request, total = ready.request, ready.total
    member = path.name.removesuffix(SUFFIX[request.compression])
    defuse = request.format in SPREADSHEET_FORMATS
    done, last = 0, time.monotonic()
    with (
        open_sink(path, request.compression, member) as sink,
        exports_repo.stream(database_url, ready.plan.statement) as reader,
    ):
        schema = pa.schema([pa.field(f.name, f.type) for f in reader.schema])
        writer = open_writer(request.format, sink, schema, ready.report, path.parent)
        for batch in reader:
            batch = transform(batch, schema, ready.plan.columns, ready.pseudo, defuse=defuse)
            writer.write(batch)
            done += batch.num_rows
            if time.monotonic() - last >= PROGRESS_EVERY_S:
                checkpoint(min(0.98, done / max(total, 1)), f"{done} of ~{total} rows")
                last = time.monotonic()
        writer.close()
    return done


def transform(
    batch: pa.RecordBatch,
    schema: pa.Schema,
    columns: list[OutCol],
    pseudo: Pseudonymizer | None,
    *,
    defuse: bool,
) -> pa.RecordBatch:
    """Neutralize text, pseudonymize sensitive columns; same schema out, without metadata."""
    arrays = []
    for array, column in zip(batch.columns, columns, strict=True):
        if pseudo is not None and column.sensitivity is not None:
            array = pseudo.pseudonyms(array, column.sensitivity)
        if column.type == "text":  # ids, times and numbers come from typed SQL columns
            array = strip_controls(array)
            if defuse:
                array = defuse_formulas(array)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def result_of(export: Export, store: ObjectStore) -> dict[str, Any]:
    result: dict[str, Any] = {"export_id": str(export.id), "status": export.status}
    if export.status == "ready" and export.bucket and export.key and export.expires_at:
        result.update(
            filename=export.filename,
            size=export.size,
            rows=export.row_count,
            expires_at=export.expires_at.isoformat(),
            download_url=download_url(export, store, now=export.completed_at),
        )
    return result


def download_url(export: Export, store: ObjectStore, *, now: datetime | None) -> str | None:
    if export.status != "ready" or not (export.bucket and export.key and export.expires_at):
        return None
    left = export.expires_at - (now or export.expires_at)
    ttl = min(max(left, timedelta(seconds=60)), PRESIGN_MAX)
    return store.presigned_get(export.bucket, export.key, ttl)


def _user_timezone(session: Session, user_id: str) -> str:
    timezone = exports_repo.product_user_timezone(session, _product_user(user_id))
    if timezone is None:
        raise PermanentError(f"no user {user_id}", code="unknown_user", user_id=user_id)
    return timezone


def _product_user(user_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(user_id)
    except ValueError:
        raise PermanentError(
            "user_id must be a product user id (uuid)", code="unknown_user", user_id=user_id
        ) from None


def _check_size(fmt: ExportFormat, total: int, config: ExportConfig) -> None:
    cap = {ExportFormat.PDF: config.pdf_max_rows, ExportFormat.XLSX: XLSX_MAX_ROWS}.get(fmt)
    if cap is not None and total > cap:
        raise TooManyRows(f"{total} rows; {fmt.value} exports hold at most {cap}", rows=total)


def _pseudonymizer(
    request: ExportRequest, config: ExportConfig, export_id: uuid.UUID
) -> Pseudonymizer | None:
    if not request.anonymize:
        return None
    if config.pseudonym_key is None:
        raise PermanentError(
            "anonymized exports need CONVEYOR_EXPORT_PSEUDONYM_KEY",
            code="anonymization_unavailable",
        )
    return Pseudonymizer(config.pseudonym_key, export_id)


def _chart_points(
    session: Session, the_plan: Plan, pseudo: Pseudonymizer | None
) -> list[tuple[str, float]]:
    chart = the_plan.chart
    if chart is None:
        return []
    pairs = exports_repo.pairs(session, the_plan.statement, chart.x, chart.y, CHART_POINTS)
    labels = pa.array([None if x is None else str(x) for x, _ in pairs], pa.string())
    x_column = next(c for c in the_plan.columns if c.name == chart.x)
    if pseudo is not None and x_column.sensitivity is not None:
        labels = pseudo.pseudonyms(labels, x_column.sensitivity)
    heights = [float(y or 0) for _, y in pairs]
    return [(x or "", y) for x, y in zip(labels.to_pylist(), heights, strict=True)]


def _filename(request: ExportRequest, window: ranges.Resolved) -> str:
    stem = f"{request.template}-{window.first_day.isoformat()}-{window.last_day.isoformat()}"
    return f"{stem}.{EXTENSIONS[request.format]}{SUFFIX[request.compression]}"
