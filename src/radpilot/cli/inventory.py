"""``radpilot inventory``: what the archive holds, as a table, JSON, CSV or an HTML page."""

from __future__ import annotations

import csv
import enum
import io
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from radpilot.cli.context import fail, open_database, reporting_errors, settings_of
from radpilot.data.inventory import build_inventory
from radpilot.data.inventory_html import human_bytes, render_html

__all__ = ["OutputFormat", "inventory", "inventory_csv", "print_table"]

CSV_COLUMNS = (
    "modality",
    "manufacturer",
    "model",
    "protocol",
    "studies",
    "series",
    "instances",
    "bytes",
)


class OutputFormat(enum.StrEnum):
    """The formats ``radpilot inventory`` writes."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    HTML = "html"


def inventory(
    ctx: typer.Context,
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            case_sensitive=False,
            help="table (readable), json (every figure), csv (the modality x "
            "manufacturer x model x protocol table) or html (a page with plots).",
        ),
    ] = OutputFormat.TABLE,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", dir_okay=False, help="Write to FILE instead of standard output."
        ),
    ] = None,
) -> None:
    """Count studies, series and instances by modality, device and protocol; report problems.

    Computed in the database (SQL aggregates). No patient names, IDs or UIDs are shown.
    """
    settings = settings_of(ctx)
    with reporting_errors():
        try:
            db = open_database(settings)
            try:
                with db.session() as session:
                    result = build_inventory(session)
            finally:
                db.dispose()
        except SQLAlchemyError as exc:
            fail(
                f"cannot read the database ({type(exc).__name__}); check "
                "RADPILOT_DATABASE_URL and that the database server is reachable"
            )
        if output_format is OutputFormat.TABLE:
            text = print_table(
                result, width=None if output is None else 120, to_string=output is not None
            )
        elif output_format is OutputFormat.JSON:
            text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
        elif output_format is OutputFormat.CSV:
            text = inventory_csv(result)
        else:
            text = render_html(result)
        if output is None:
            if text:
                sys.stdout.write(text)
            return
        _write(output, text)
        typer.echo(f"wrote {output}", err=True)


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a reader never sees half.

    Raises
    ------
    OSError
        If the directory cannot be created or the file cannot be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def inventory_csv(result: dict[str, Any]) -> str:
    """The ``groups`` of an inventory as CSV with a header row (:data:`CSV_COLUMNS`)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(result["groups"])
    return buffer.getvalue()


def print_table(
    result: dict[str, Any], *, width: int | None = None, to_string: bool = False
) -> str:
    """Print the inventory as rich tables; return the text instead when ``to_string``."""
    buffer = io.StringIO() if to_string else None
    console = Console(file=buffer, width=width, color_system=None if to_string else "auto")
    t = result["totals"]
    dates = result["date_range"]
    summary = Table(title=f"radpilot inventory ({result['generated_at']})", show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    for name in ("patients", "studies", "series", "instances", "frames"):
        summary.add_row(name, str(t[name]))
    summary.add_row("stored", human_bytes(t["bytes"]))
    summary.add_row("study dates", f"{dates['first'] or '-'} to {dates['last'] or '-'}")
    labels = result["labels"]
    summary.add_row(
        "studies with labels", f"{labels['studies_with_labels']} ({labels['reads']} reads)"
    )
    console.print(summary)
    console.print(
        _rows_table(
            "modality x manufacturer x model x protocol",
            result["groups"],
            ["modality", "manufacturer", "model", "protocol"],
            ["studies", "series", "instances"],
            limit=40,
        )
    )
    console.print(
        _rows_table(
            "transfer syntaxes",
            [
                {**ts, "name": ts["name"] + ("" if ts["common"] else " (unusual)")}
                for ts in result["transfer_syntaxes"]
            ],
            ["name"],
            ["instances"],
        )
    )
    ages = Table(title="age at the study (years) by sex, studies")
    ages.add_column("band")
    for sex in ("F", "M", "O", "unknown"):
        ages.add_column(sex, justify="right")
    for band in result["age"]["bands"]:
        ages.add_row(
            Text(band["band"] + (" (paediatric)" if band["paediatric"] else "")),
            *(str(band["by_sex"][s]) for s in ("F", "M", "O", "unknown")),
        )
    ages.add_row(Text("unknown"), *(str(n) for n in result["age"]["unknown_age_by_sex"].values()))
    console.print(ages)
    if labels["by_finding"]:
        console.print(
            _rows_table(
                "reads by finding",
                labels["by_finding"],
                ["finding"],
                ["studies", "reads", "positive_reads", "readers"],
            )
        )
    problems = Table(title="problems")
    for column in ("problem", "severity", "count", "details"):
        problems.add_column(column, justify="right" if column == "count" else "left")
    for problem in result["problems"]:
        if problem["count"]:
            details = "; ".join(
                f"{b['value'] if b['value'] is not None else '(none)'}: {b['count']}"
                for b in problem["breakdown"][:4]
            )
            problems.add_row(
                problem["kind"],
                problem["severity"],
                f"{problem['count']} {problem['unit']}",
                Text(details),
            )
    if problems.row_count:
        console.print(problems)
    else:
        console.print("no problems found")
    return buffer.getvalue() if buffer is not None else ""


def _rows_table(
    title: str, rows: list[dict[str, Any]], keys: list[str], metrics: list[str], limit: int = 20
) -> Table:
    table = Table(title=title)
    for key in keys:
        table.add_column(key.replace("_", " "))
    for metric in metrics:
        table.add_column(metric.replace("_", " "), justify="right")
    for row in rows[:limit]:
        table.add_row(
            *(Text("-" if row[k] is None else str(row[k])) for k in keys),
            *(str(row[m]) for m in metrics),
        )
    if len(rows) > limit:
        table.caption = f"{len(rows) - limit} more rows: radpilot inventory --format json"
    return table
