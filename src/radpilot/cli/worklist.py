"""``radpilot worklist``: the studies to read, most urgent first, in the terminal or as JSON.

The JSON is the same list ``GET /api/worklist`` answers (the same pydantic models).
"""

from __future__ import annotations

import enum
import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from radpilot.cli.context import fail, open_database, reporting_errors, settings_of
from radpilot.pipeline.worklist import (
    AiStatus,
    PriorityTier,
    WorklistFilter,
    WorklistPage,
    WorklistRow,
    query_worklist,
)
from radpilot.web.schemas import WorklistItem

__all__ = ["WorklistFormat", "human_wait", "print_worklist", "worklist"]


class WorklistFormat(enum.StrEnum):
    """The formats ``radpilot worklist`` writes."""

    TABLE = "table"
    JSON = "json"


def worklist(
    ctx: typer.Context,
    output_format: Annotated[
        WorklistFormat,
        typer.Option("--format", case_sensitive=False, help="table (readable) or json."),
    ] = WorklistFormat.TABLE,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Studies to show.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Studies to skip (paging).")] = 0,
    modality: Annotated[str | None, typer.Option(help="Only studies with this modality.")] = None,
    finding: Annotated[
        str | None, typer.Option(help="Only studies with an AI result for this finding.")
    ] = None,
    ai_status: Annotated[
        AiStatus | None, typer.Option("--ai-status", case_sensitive=False, help="AI status.")
    ] = None,
    decided: Annotated[
        bool | None,
        typer.Option("--decided/--undecided", help="Only studies with / without a decision."),
    ] = None,
    search: Annotated[
        str | None,
        typer.Option("--search", "-q", help="Text in the study description or accession number."),
    ] = None,
) -> None:
    """List studies with AI results or waiting for AI, most urgent first.

    Critical findings first, then positive ones, then by AI score, then oldest first.
    Results of shadow models are never shown.
    """
    settings = settings_of(ctx)
    with reporting_errors():
        flt = WorklistFilter(
            modality=modality,
            finding=finding,
            ai_status=ai_status,
            decided=decided,
            text=search,
            limit=limit,
            offset=offset,
        )
        try:
            db = open_database(settings)
            try:
                with db.session() as session:
                    page = query_worklist(session, flt)
            finally:
                db.dispose()
        except SQLAlchemyError as exc:
            fail(
                f"cannot read the database ({type(exc).__name__}); check "
                "RADPILOT_DATABASE_URL and that the database server is reachable"
            )
        if output_format is WorklistFormat.JSON:
            items = [WorklistItem.model_validate(r).model_dump(mode="json") for r in page.rows]
            sys.stdout.write(json.dumps(items, indent=2, ensure_ascii=False) + "\n")
        else:
            print_worklist(page)


def human_wait(seconds: float) -> str:
    """A waiting time the way a radiologist reads it: ``45 s``, ``12 min``, ``3 h 05``."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d}"
    return f"{s // 86400} d {s % 86400 // 3600} h"


_TIER = {
    PriorityTier.CRITICAL: ("CRITICAL", "bold red"),
    PriorityTier.POSITIVE: ("positive", "yellow"),
    PriorityTier.RESULT: ("negative", ""),
    PriorityTier.NO_RESULT: ("-", "dim"),
}


def _findings(row: WorklistRow) -> Text:
    text = Text()
    for i, r in enumerate(row.results):
        if i:
            text.append("\n")
        mark = "!" if r.critical else ("+" if r.above_operating_point else "-")
        score = "-" if r.score is None else f"{r.score:.2f}"
        text.append(f"{mark} {r.finding or '-'} {score}", style="bold" if mark != "-" else "")
        text.append(f" ({r.model_name}:{r.model_version})", style="dim")
    return text


def print_worklist(page: WorklistPage, console: Console | None = None) -> None:
    """Print one page of the worklist as a table."""
    console = console or Console()
    if not page.rows:
        console.print(
            "the worklist is empty: no study has an AI result or is complete and waiting"
            if page.total == 0
            else f"no study on this page ({page.total} in all; lower --offset)"
        )
        return
    table = Table(title=f"radpilot worklist ({page.generated_at:%Y-%m-%d %H:%M} UTC)")
    for column in ("#", "priority", "AI", "waiting", "accession", "patient", "age/sex"):
        table.add_column(column, justify="right" if column in ("#", "waiting") else "left")
    for column in ("modality", "description", "AI findings", "decision"):
        table.add_column(column)
    for i, row in enumerate(page.rows, start=page.offset + 1):
        label, style = _TIER[row.priority]
        decision = row.decision
        table.add_row(
            str(i),
            Text(label, style=style),
            row.ai_status.value,
            human_wait(row.waiting_seconds),
            Text(row.accession_number or "-"),
            Text(row.patient_id),
            f"{row.age or '-'}/{row.sex or '-'}",
            "/".join(row.modalities) or "-",
            Text(row.study_description or "-"),
            _findings(row),
            Text("-" if decision is None else f"{decision.decision.value} ({decision.reader})"),
        )
    shown = f"{page.offset + 1}-{page.offset + len(page.rows)} of {page.total}"
    table.caption = f"studies {shown}; ! critical, + positive at the operating point"
    console.print(table)
