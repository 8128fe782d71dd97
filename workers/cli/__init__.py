"""`conveyor`: one CLI for operators and newcomers (Typer + rich)."""

from __future__ import annotations

from typing import Annotated

import typer

from workers.cli import backups, jobs, ops, run, security

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
run.register(app)
jobs.register(app)
ops.register(app)
backups.register(app)
security.register(app)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"conveyor {version('conveyor')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    """Event-driven job workers. In a folder where `conveyor dev` runs, every command reads
    its settings from .conveyor/env (variables you set yourself take precedence)."""


def main() -> None:
    from shared.config import warn_unknown_variables
    from workers.cli.devstate import load_dev_env

    load_dev_env()
    warn_unknown_variables()
    app()
