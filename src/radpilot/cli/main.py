"""Entry point of the ``radpilot`` command and its global options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from radpilot import __version__
from radpilot.core.errors import ConfigurationError
from radpilot.core.logging import configure_logging
from radpilot.core.settings import load_settings
from radpilot.dicom.reading import configure_pydicom

__all__ = ["app", "main"]

app = typer.Typer(
    name="radpilot",
    help="AI for diagnostic imaging: DICOM intake, de-identification, inventory and more.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"radpilot {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="RADPILOT_DATA_DIR",
            help="Installation directory: database, archive, models, reports "
            "[default: ./radpilot-data].",
        ),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Settings come from RADPILOT_* variables, RADPILOT_CONFIG (YAML/TOML), then options."""
    try:
        settings = load_settings(data_dir=data_dir, log_level=log_level)
    except ConfigurationError as exc:
        typer.echo(f"radpilot: error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    configure_logging(settings.log_level)
    configure_pydicom()
    ctx.obj = settings


_registered = False


def _register() -> None:
    # Imported here so that `radpilot --help` stays fast and modules stay independent.
    global _registered
    if _registered:
        return
    _registered = True
    from radpilot.cli import (
        audit,
        deid,
        demo,
        governance,
        inventory,
        labels,
        monitor,
        outcomes,
        serve,
        stats,
        synth,
        train,
        usecases,
        users,
        validate,
        worker,
        worklist,
    )
    from radpilot.cli import ingest as ingest_cmd
    from radpilot.cli import models as models_cli

    app.command("serve")(serve.serve)
    app.command("ingest")(ingest_cmd.ingest)
    app.command("deid")(deid.deid)
    app.command("inventory")(inventory.inventory)
    app.add_typer(labels.app, name="labels")
    app.add_typer(models_cli.app, name="models")
    app.command("synth")(synth.synth)
    app.command("train")(train.train)
    app.command("validate")(validate.validate)
    app.add_typer(usecases.app, name="usecases")
    app.command("worker")(worker.worker)
    app.add_typer(audit.app, name="audit")
    app.add_typer(users.app, name="users")
    app.add_typer(monitor.app, name="monitor")
    app.add_typer(governance.app, name="governance")
    app.add_typer(outcomes.app, name="outcomes")
    app.command("worklist")(worklist.worklist)
    app.add_typer(stats.app, name="stats")
    app.command("demo")(demo.demo)


def main() -> None:
    """Run the command line."""
    _register()
    app()
