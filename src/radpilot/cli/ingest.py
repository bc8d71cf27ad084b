"""``radpilot ingest PATH...``: import folders, files, DICOMDIR and zip archives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from radpilot.cli.context import fail, open_database, reporting_errors, settings_of
from radpilot.dicom.ingest import IngestSummary, ingest_sources
from radpilot.dicom.intake import Intake
from radpilot.dicom.sources import collect_sources, count_sources

__all__ = ["ingest"]


def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Folders, files, DICOMDIR or .zip.")],
    output_format: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Import DICOM into the archive and index; ends with a summary.

    Non-DICOM files are skipped and counted. Exit status 1 if nothing could be imported
    and something was rejected.
    """
    if output_format not in ("table", "json"):
        raise typer.BadParameter("choose table or json", param_hint="--format")
    settings = settings_of(ctx)
    with reporting_errors():
        for path in paths:
            if not path.exists():
                fail(f"{path} does not exist")
        db = open_database(settings)
        from radpilot.pipeline.service import build_intake

        intake = build_intake(settings, db)
        intake.start()
        try:
            summary = _run(paths, intake, show=progress and output_format == "table")
        finally:
            intake.stop()
    if output_format == "json":
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        _print(summary)
    if summary.imported == 0 and summary.rejected:
        raise typer.Exit(code=1)


def _run(paths: list[Path], intake: Intake, *, show: bool) -> IngestSummary:
    if not show:
        return ingest_sources(collect_sources(paths), intake)
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("ingest", total=count_sources(paths))
        return ingest_sources(collect_sources(paths), intake, progress=lambda: bar.advance(task))


def _print(summary: IngestSummary) -> None:
    table = Table(title="radpilot ingest")
    table.add_column("outcome")
    table.add_column("files", justify="right")
    table.add_row("imported", str(summary.imported))
    table.add_row("duplicates", str(summary.duplicates))
    if summary.conflicts:
        table.add_row("conflicts (kept aside)", str(summary.conflicts))
    if summary.quarantined:
        table.add_row("quarantined for review", str(summary.quarantined))
    for reason, count in summary.rejected.most_common():
        table.add_row(f"rejected: {reason}", str(count))
    for reason, count in summary.skipped.most_common():
        table.add_row(f"skipped: {reason}", str(count))
    Console().print(table)
