"""``radpilot governance``: the dossier of a model version and the surveillance report."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from radpilot.cli.context import database, reporting_errors, settings_of

__all__ = ["app"]

app = typer.Typer(
    help="Regulatory files: dossier and surveillance (docs/governance.md).", no_args_is_help=True
)


def _date(text: str, option: str) -> dt.datetime:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter("a date, YYYY-MM-DD", param_hint=option) from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


@app.command("dossier")
def dossier(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="NAME:VERSION.")],
    output: Annotated[Path, typer.Option(help="Folder for dossier.html, .pdf, .json.")] = Path(
        "dossier"
    ),
) -> None:
    """The regulatory file of one version: intended use, model card, validation reports,
    approvals, change history and the predetermined change control plan."""
    from radpilot.governance.dossier import build_dossier
    from radpilot.governance.pages import write_all

    name, _, version = model.partition(":")
    if not version:
        raise typer.BadParameter("name the version: NAME:VERSION", param_hint="MODEL")
    with reporting_errors(), database(ctx) as db:
        report = build_dossier(db, settings_of(ctx), name, version)
        paths = write_all(report, "dossier.html", output, "dossier")
    for path in paths:
        typer.echo(str(path))


@app.command("surveillance")
def surveillance(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="The model name (all its versions).")],
    start: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD (UTC).")],
    end: Annotated[str, typer.Option("--to", help="Day after the last, YYYY-MM-DD.")],
    bucket_days: Annotated[int, typer.Option(min=1, max=366, help="Days per row.")] = 7,
    output: Annotated[Path, typer.Option(help="Folder for surveillance.html, .pdf, .json.")] = (
        Path("surveillance")
    ),
) -> None:
    """The periodic report: volumes, positive rate and agreement over time with CIs,
    performance against reference labels, drift, and the actions taken."""
    from radpilot.governance.pages import write_all
    from radpilot.governance.surveillance import build_surveillance

    first, last = _date(start, "--from"), _date(end, "--to")
    if last <= first:
        raise typer.BadParameter("--to must be after --from", param_hint="--to")
    with reporting_errors(), database(ctx) as db:
        report = build_surveillance(db, model, first, last, bucket_days)
        paths = write_all(report, "surveillance.html", output, "surveillance")
    for path in paths:
        typer.echo(str(path))
