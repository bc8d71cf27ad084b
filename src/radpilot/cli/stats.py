"""``radpilot stats latency``: p50/p95 per stage, scanner to decision."""

from __future__ import annotations

import datetime as dt
import enum
import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from radpilot.cli.context import fail, open_database, reporting_errors, settings_of
from radpilot.pipeline.latency import LatencyReport, StageStats, latency_report

__all__ = ["app", "human_seconds", "latency", "print_latency"]

app = typer.Typer(help="Statistics of the pipeline.", no_args_is_help=True)


class StatsFormat(enum.StrEnum):
    """The formats ``radpilot stats`` writes."""

    TABLE = "table"
    JSON = "json"


def _since(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date or time; write e.g. 2024-05-01 or "
            "2024-05-01T08:00:00+02:00",
            param_hint="--since",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@app.command("latency")
def latency(
    ctx: typer.Context,
    output_format: Annotated[
        StatsFormat,
        typer.Option("--format", case_sensitive=False, help="table (readable) or json."),
    ] = StatsFormat.TABLE,
    model: Annotated[
        str | None, typer.Option(help="Only this model: NAME or NAME:VERSION.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only jobs queued from this time on (ISO 8601; UTC if no offset)."),
    ] = None,
) -> None:
    """p50 and p95 of each stage (received, complete, queued, inference, stored,
    delivered, opened, decided) and end to end, from the time stamps in the database.

    Percentiles are linear interpolation (numpy.percentile's default method).
    """
    settings = settings_of(ctx)
    start = _since(since)
    with reporting_errors():
        try:
            db = open_database(settings)
            try:
                with db.session() as session:
                    report = latency_report(session, model=model, since=start)
            finally:
                db.dispose()
        except SQLAlchemyError as exc:
            fail(
                f"cannot read the database ({type(exc).__name__}); check "
                "RADPILOT_DATABASE_URL and that the database server is reachable"
            )
        if output_format is StatsFormat.JSON:
            sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
        else:
            print_latency(report)


def human_seconds(seconds: float | None) -> str:
    """A duration with the precision that matters at its size: ``0.35 s``, ``4 min 05 s``."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = round(seconds)
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _add(table: Table, stats: StageStats) -> None:
    table.add_row(
        f"{stats.start} -> {stats.end}",
        str(stats.count),
        human_seconds(stats.p50_seconds),
        human_seconds(stats.p95_seconds),
        human_seconds(stats.max_seconds),
        str(stats.out_of_order) if stats.out_of_order else "",
    )


def print_latency(report: LatencyReport, console: Console | None = None) -> None:
    """Print the report as a table, or say plainly that there is no data."""
    console = console or Console()
    if report.empty:
        console.print(
            "no data: no job with time stamps yet (send a study and let a model run, "
            "or widen --since / --model)"
        )
        return
    table = Table(title=f"radpilot latency over {report.jobs} jobs")
    for column in ("stage", "n", "p50", "p95", "max", "out of order"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stats in report.stages:
        _add(table, stats)
    table.add_section()
    for stats in report.end_to_end:
        _add(table, stats)
    table.caption = "linear-interpolated percentiles (numpy.percentile's default)"
    console.print(table)
