"""`conveyor`: one CLI for operators and newcomers (Typer + rich)."""

from __future__ import annotations

import typer

from workers.cli import backups, jobs, ops, run

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
run.register(app)
jobs.register(app)
ops.register(app)
backups.register(app)


def main() -> None:
    app()
