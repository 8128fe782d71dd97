"""Job commands: submit, job, status."""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import session_scope
from shared.db.models import Job
from shared.db.models.jobs import TERMINAL_STATES
from shared.db.repos import jobs as jobs_repo
from shared.errors import ConveyorError
from shared.jobs.submit import NewJob, submit_jobs
from shared.messaging.depth import queue_depths
from shared.messaging.names import Priority
from workers.cli.common import console, sessions, settings_or_exit


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.command(name="job")(show_job)
    app.command()(status)


def submit(
    kind: Annotated[str, typer.Argument(help="job kind, e.g. diag.noop")],
    user: Annotated[str, typer.Option("--user", help="the user the job acts for")],
    payload: Annotated[str, typer.Option(help="JSON object")] = "{}",
    priority: Annotated[Priority | None, typer.Option()] = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow the job to its end")] = False,
) -> None:
    """Submit a job (transactionally, through the outbox) and optionally wait for it."""
    try:
        body = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--payload is not JSON: {exc}") from None
    with sessions() as factory:
        try:
            with session_scope(factory) as session:
                [outcome] = submit_jobs(session, [NewJob(kind, user, body, priority)], source="cli")
        except ConveyorError as exc:
            console.print(f"[red]{exc.code}[/red]: {exc.message}")
            raise typer.Exit(1) from None
        console.print(f"submitted [bold]{outcome.job_id}[/bold]")
        if wait:
            job = _follow(factory, outcome.job_id)
            _print_job(job)
            raise typer.Exit(0 if job.state == "succeeded" else 1)


def _follow(factory: sessionmaker[Session], job_id: uuid.UUID) -> Job:
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
    """Show a job and its transitions."""
    with sessions() as factory, session_scope(factory) as session:
        job = jobs_repo.get(session, job_id)
        if job is None:
            console.print(f"[red]no job {job_id}[/red]")
            raise typer.Exit(1)
        if follow and job.state not in TERMINAL_STATES:
            job = _follow(factory, job_id)
        _print_job(job)
        table = Table("at", "attempt", "from", "to", "reason")
        for e in jobs_repo.events_of(session, job_id):
            table.add_row(
                e.at.isoformat(timespec="milliseconds"),
                str(e.attempt),
                e.from_state or "",
                e.to_state,
                e.reason or "",
            )
        console.print(table)


def _print_job(job: Job) -> None:
    console.print(
        f"[bold]{job.id}[/bold] {job.kind} user={job.user_id} state=[bold]{job.state}"
        f"[/bold] attempt={job.attempt}/{job.max_attempts} progress={job.progress:.0%}"
    )
    if job.error_code:
        console.print(f"  error: {job.error_code}: {job.error_message}")
    if job.result is not None:
        console.print(f"  result: {json.dumps(job.result)}")


def status(
    watch: Annotated[bool, typer.Option("--watch", help="live view until Ctrl-C")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="--watch refresh, seconds")] = 2.0,
) -> None:
    """Queue depth per queue, and job counts per kind and state."""
    settings = settings_or_exit()
    if watch:
        from workers.cli.watch import watch_status

        watch_status(settings, interval)
        return
    if settings.broker_url:
        queues = Table(
            Column("queue", no_wrap=True), "ready", "unacked", "consumers", title="queues"
        )
        for d in queue_depths(settings.broker_url, settings.rabbitmq_api_url):
            queues.add_row(
                d.queue,
                str(d.ready),
                "?" if d.unacked is None else str(d.unacked),
                str(d.consumers),
            )
        console.print(queues)
    with sessions() as factory, session_scope(factory) as session:
        counts = jobs_repo.counts_by_kind_state(session)
        ages = jobs_repo.oldest_queued_age_s(session)
    states = ["queued", "running", "succeeded", "failed", "cancelled", "dead"]
    kinds = Table(Column("kind", no_wrap=True), *states, "oldest queued", title="jobs")
    for kind in sorted({k for k, _, _ in counts}):
        by_state = {s: n for k, s, n in counts if k == kind}
        age = f"{ages[kind]:.1f}s" if kind in ages else "-"
        kinds.add_row(kind, *(str(by_state.get(s, 0)) for s in states), age)
    console.print(kinds)
