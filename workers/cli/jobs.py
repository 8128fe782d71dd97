"""Job commands: submit, job, jobs, cancel, status, workers."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Column, Table

from shared.messaging.names import Priority
from workers.cli.common import console, sessions, settings_or_exit

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from shared.config import Settings
    from shared.db.models import Job


class StateOpt(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    dead = "dead"


STATES = [s.value for s in StateOpt]


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.command(name="job")(show_job)
    app.command(name="jobs")(list_jobs)
    app.command()(cancel)
    app.command()(status)
    app.command()(workers)


def submit(
    kind: Annotated[str, typer.Argument(help="job kind, e.g. diag.noop")],
    user: Annotated[str, typer.Option("--user", help="the user the job acts for")],
    payload: Annotated[str, typer.Option(help="JSON object")] = "{}",
    priority: Annotated[Priority | None, typer.Option()] = None,
    run_at: Annotated[
        datetime | None, typer.Option("--run-at", help="not before (ISO 8601, UTC if no zone)")
    ] = None,
    delay: Annotated[float | None, typer.Option("--delay", min=0, help="seconds from now")] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow the job to its end")] = False,
) -> None:
    """Submit a job (transactionally, through the outbox) and optionally wait for it."""
    from shared.jobs.submit import NewJob

    try:
        body = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--payload is not JSON: {exc}") from None
    if run_at is not None and delay is not None:
        raise typer.BadParameter("give --run-at or --delay, not both")
    new = NewJob(
        kind,
        user,
        body,
        priority,
        run_at=_utc(run_at),
        delay_s=delay,
        idempotency_key=idempotency_key,
    )
    with sessions() as factory:
        job_id, created = _submit(factory, new)
        console.print(f"{'submitted' if created else 'replayed'} [bold]{job_id}[/bold]")
        if wait:
            job = _follow(factory, job_id)
            _print_job(job)
            raise typer.Exit(0 if job.state == "succeeded" else 1)


def _utc(when: datetime | None) -> datetime | None:
    from datetime import UTC

    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


def _submit(factory: sessionmaker[Session], new: object) -> tuple[uuid.UUID, bool]:
    from shared.db.engine import session_scope
    from shared.db.repos import api_keys as api_keys_repo
    from shared.errors import ConveyorError
    from shared.jobs.submit import NewJob, submit_jobs

    assert isinstance(new, NewJob)
    try:
        with session_scope(factory) as session:
            key_id = api_keys_repo.internal_key(session, "conveyor-cli")  # scopes idempotency
            [outcome] = submit_jobs(session, [new], source="cli", api_key_id=key_id)
    except ConveyorError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        raise typer.Exit(1) from None
    return outcome.job_id, outcome.created


def _follow(factory: sessionmaker[Session], job_id: uuid.UUID) -> Job:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from shared.db.engine import session_scope
    from shared.db.models.jobs import TERMINAL_STATES
    from shared.db.repos import jobs as jobs_repo

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("queued", total=1.0, note="")
        while True:
            with session_scope(factory) as session:
                job = jobs_repo.get(session, job_id)
            assert job is not None
            progress.update(
                task, completed=job.progress, description=job.state, note=job.progress_message or ""
            )
            if job.state in TERMINAL_STATES:
                return job
            time.sleep(0.2)


def show_job(
    job_id: Annotated[uuid.UUID, typer.Argument()],
    follow: Annotated[bool, typer.Option("--follow", help="progress bar until it ends")] = False,
) -> None:
    """Show a job and its transitions (with their messages)."""
    from shared.db.engine import session_scope
    from shared.db.models.jobs import TERMINAL_STATES
    from shared.db.repos import jobs as jobs_repo

    with sessions() as factory, session_scope(factory) as session:
        job = jobs_repo.get(session, job_id)
        if job is None:
            console.print(f"[red]no job {job_id}[/red]")
            raise typer.Exit(1)
        if follow and job.state not in TERMINAL_STATES:
            job = _follow(factory, job_id)
        _print_job(job)
        table = Table("at", "attempt", "from", "to", "reason", "message")
        for e in jobs_repo.history_of(session, job_id):
            table.add_row(
                e.at.isoformat(timespec="milliseconds"),
                str(e.attempt),
                e.from_state or "",
                e.to_state,
                e.reason or "",
                e.message or "",
            )
        console.print(table)


def _print_job(job: Job) -> None:
    console.print(
        f"[bold]{job.id}[/bold] {job.kind} user={job.user_id} state=[bold]{job.state}"
        f"[/bold] attempt={job.attempt}/{job.max_attempts} progress={job.progress:.0%}"
        f" run_at={job.run_at.isoformat(timespec='seconds')} worker={job.worker or '-'}"
    )
    if job.error_code:
        console.print(f"  error: {job.error_code}: {job.error_message}")
    if job.result is not None:
        console.print(f"  result: {json.dumps(job.result)}")


def list_jobs(
    kind: Annotated[str | None, typer.Option(help="only this kind")] = None,
    state: Annotated[StateOpt | None, typer.Option(help="only this state")] = None,
    user: Annotated[str | None, typer.Option("--user", help="only this user")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
) -> None:
    """List jobs, newest first."""
    from shared.db.engine import session_scope
    from shared.db.repos import jobs as jobs_repo

    if kind is not None and not _known_kind(kind):
        _exit(f"unknown kind {kind!r}")
    with sessions() as factory, session_scope(factory) as session:
        found = jobs_repo.list_jobs(
            session,
            user_ids=[user] if user else None,
            api_key_id=None,
            kind=kind,
            state=state.value if state else None,
            after=None,
            limit=limit,
        )
    table = Table(
        Column("id", no_wrap=True), "kind", "user", "state", "attempt", "created", "worker"
    )
    for j in found:
        table.add_row(
            str(j.id),
            j.kind,
            j.user_id,
            j.state,
            f"{j.attempt}/{j.max_attempts}",
            j.created_at.isoformat(timespec="seconds"),
            j.worker or "-",
        )
    console.print(table)


def _known_kind(kind: str) -> bool:
    from shared.jobs.catalog import all_specs

    return kind in {s.kind for s in all_specs()}


def _exit(message: str) -> None:
    console.print(f"[red]{message}[/red]")
    raise typer.Exit(2)


def cancel(job_id: Annotated[uuid.UUID, typer.Argument()]) -> None:
    """Cancel a job: a queued one never runs, a running one stops at its next checkpoint."""
    from shared.db.engine import session_scope
    from shared.db.repos import jobs as jobs_repo
    from shared.errors import ConveyorError
    from shared.jobs.cancel import cancel_job

    with sessions() as factory:
        try:
            with session_scope(factory) as session:
                job = jobs_repo.get(session, job_id)
                if job is None:
                    _exit(f"no job {job_id}")
                assert job is not None
                state = cancel_job(session, job).state
        except ConveyorError as exc:
            console.print(f"[red]{exc.code}[/red]: {exc.message}")
            raise typer.Exit(1) from None
    verb = "cancelled" if state == "cancelled" else "cancel requested (stops at a checkpoint)"
    console.print(f"{job_id}: {verb}")


def status(
    watch: Annotated[bool, typer.Option("--watch", help="live view until Ctrl-C")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="--watch refresh, seconds")] = 2.0,
) -> None:
    """Queue depth per queue, and job counts per kind and state."""
    from shared.db.engine import session_scope
    from shared.db.repos import jobs as jobs_repo
    from shared.db.repos import periodic as periodic_repo
    from shared.jobs.retention import RUN_NAME as RETENTION_RUN

    settings = settings_or_exit()
    if watch:
        from workers.cli.watch import watch_status

        watch_status(settings, interval)
        return
    if settings.broker_url:
        from shared.messaging.depth import queue_depths

        queues = Table(
            Column("queue", no_wrap=True), "ready", "unacked", "consumers", title="queues"
        )
        for d in queue_depths(settings.broker_url, settings.rabbitmq_api_url):
            unacked = "?" if d.unacked is None else str(d.unacked)
            queues.add_row(d.queue, str(d.ready), unacked, str(d.consumers))
        console.print(queues)
    with sessions() as factory, session_scope(factory) as session:
        counts = jobs_repo.counts_by_kind_state(session)
        ages = jobs_repo.oldest_queued_age_s(session)
        purged_at = periodic_repo.last_run(session, RETENTION_RUN)
    kinds = Table(Column("kind", no_wrap=True), *STATES, "oldest queued", title="jobs")
    for kind in sorted({k for k, _, _ in counts}):
        by_state = {s: n for k, s, n in counts if k == kind}
        age = f"{ages[kind]:.1f}s" if kind in ages else "-"
        kinds.add_row(kind, *(str(by_state.get(s, 0)) for s in STATES), age)
    console.print(kinds)
    console.print(retention_line(settings, purged_at))


def retention_line(settings: Settings, purged_at: datetime | None) -> str:
    overrides = ", ".join(f"{k} {v / 86400:g}d" for k, v in settings.job_retention_by_kind.items())
    kept = f"{settings.job_retention_s / 86400:g}d" + (f" ({overrides})" if overrides else "")
    last = "never" if purged_at is None else purged_at.isoformat(timespec="seconds")
    return f"retention: terminal jobs kept {kept}; last purge run: {last}"


def workers() -> None:
    """Who runs what: each worker with its running jobs, and what it finished lately."""
    from shared.db.engine import session_scope
    from shared.db.repos import workers as workers_repo

    with sessions() as factory, session_scope(factory) as session:
        rows = workers_repo.activity(session, recent_s=600)
    table = Table(
        Column("worker", no_wrap=True), "pool", "running", "finished (10 min)", "last seen"
    )
    for r in rows:
        table.add_row(
            r.worker, r.pool, str(r.running), str(r.finished_recently), f"{r.last_seen_s:.0f}s ago"
        )
    console.print(table)
    if not rows:
        console.print("no worker has claimed a job in the last 10 minutes")
