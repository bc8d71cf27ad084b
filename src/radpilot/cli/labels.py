"""``radpilot labels import FILE``: reference labels and reader reads per study."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from radpilot.cli.context import fail, open_database, reporting_errors, settings_of
from radpilot.core.errors import ConfigurationError
from radpilot.data.labels import LabelImportOptions, LabelImportSummary, import_labels
from radpilot.data.labels_csv import timezone_of

__all__ = ["app", "import_command"]

app = typer.Typer(
    help="Reference labels and reader reads, attached to studies.", no_args_is_help=True
)

_SHOWN_ISSUES = 50


class SummaryFormat(enum.StrEnum):
    """How the import summary is printed."""

    TABLE = "table"
    JSON = "json"


@app.command("import")
def import_command(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV file with a header row (docs/labels.md).",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    finding: Annotated[
        str,
        typer.Option(
            help="Finding that a 0/1 or 'normal' label is about, when there is no finding column."
        ),
    ] = "finding",
    reader: Annotated[
        str, typer.Option(help="Reader id for rows without a reader cell.")
    ] = "reference",
    timezone: Annotated[
        str, typer.Option(help="Time zone of read_at values without an offset (IANA name).")
    ] = "UTC",
    strict: Annotated[
        bool, typer.Option("--strict", help="Import nothing unless every row can be imported.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the file and count, without writing.")
    ] = False,
    output_format: Annotated[
        SummaryFormat, typer.Option("--format", case_sensitive=False, help="table or json.")
    ] = SummaryFormat.TABLE,
) -> None:
    """Attach reference labels and reader reads from a CSV FILE to studies.

    Rows name their study by study_instance_uid, accession_number or patient_id (the
    pseudonym). Re-importing a file adds nothing twice. Exit status 1 when nothing could
    be imported and rows had problems, or with --strict when any row had one; the
    summary lists each such row by number with the reason.
    """
    settings = settings_of(ctx)
    try:
        timezone_of(timezone)
    except ConfigurationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--timezone") from exc
    if not finding.strip() or not reader.strip():
        raise typer.BadParameter("must not be empty", param_hint="--finding/--reader")
    options = LabelImportOptions(
        finding=finding, reader=reader, timezone=timezone, strict=strict, dry_run=dry_run
    )
    with reporting_errors():
        try:
            db = open_database(settings)
            try:
                with db.session() as session:
                    summary = import_labels(session, file, options)
            finally:
                db.dispose()
        except SQLAlchemyError as exc:
            fail(
                f"the database could not be used ({type(exc).__name__}); nothing was "
                "imported; check RADPILOT_DATABASE_URL and that the server is reachable"
            )
    if output_format is SummaryFormat.JSON:
        typer.echo(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print(summary)
    stored = summary.new_reads + summary.already_present
    if summary.issues and (strict or stored == 0):
        raise typer.Exit(code=1)


def _print(summary: LabelImportSummary) -> None:
    console = Console()
    table = Table(title=f"radpilot labels import {summary.file}")
    table.add_column("rows")
    table.add_column("count", justify="right")
    table.add_row("in the file", str(summary.rows))
    if summary.committed:
        table.add_row("imported (new reads)", str(summary.imported))
    else:
        why = "dry run" if summary.dry_run else "--strict and some rows have problems"
        table.add_row(f"would import, not written ({why})", str(summary.new_reads))
    table.add_row("already present", str(summary.already_present))
    for kind, label in (
        ("unmatched", "no such study"),
        ("ambiguous", "several studies"),
        ("invalid", "invalid"),
        ("conflict", "conflicting with stored"),
    ):
        if summary.count(kind):
            table.add_row(label, str(summary.count(kind)))
    table.add_row("studies", str(summary.studies))
    if summary.attributes_set or summary.attributes_updated:
        table.add_row(
            "case attributes set / updated",
            f"{summary.attributes_set} / {summary.attributes_updated}",
        )
    console.print(table)
    if summary.by_finding:
        console.print(
            Text(
                "findings: "
                + ", ".join(f"{name} ({n})" for name, n in sorted(summary.by_finding.items()))
            )
        )
        console.print(
            Text(
                "readers: "
                + ", ".join(f"{name} ({n})" for name, n in sorted(summary.readers.items()))
            )
        )
    if summary.ignored_columns:
        console.print(
            Text("not stored (identifying columns): " + ", ".join(summary.ignored_columns))
        )
    if summary.varying_attributes:
        console.print(
            Text(
                "differ between rows of one study (kept per read; the case "
                "attribute holds the last row's value): "
                + ", ".join(sorted(summary.varying_attributes))
            )
        )
    if summary.issues:
        issues = Table(title="rows not imported")
        issues.add_column("row", justify="right")
        issues.add_column("problem")
        issues.add_column("reason")
        for issue in summary.issues[:_SHOWN_ISSUES]:
            issues.add_row(str(issue.row), issue.kind, Text(issue.reason))
        if len(summary.issues) > _SHOWN_ISSUES:
            issues.caption = (
                f"{len(summary.issues) - _SHOWN_ISSUES} more: radpilot labels import --format json"
            )
        console.print(issues)
