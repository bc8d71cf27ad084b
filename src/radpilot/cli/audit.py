"""``radpilot audit``: check the hash-chained audit log."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from radpilot.cli.context import open_database, reporting_errors, settings_of

__all__ = ["app"]

app = typer.Typer(help="The append-only audit log.", no_args_is_help=True)


@app.command()
def verify(
    ctx: typer.Context,
    format: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
) -> None:
    """Check every entry's hash and link; name the first broken entry (exit 1)."""
    with reporting_errors():
        from radpilot.governance.audit import AuditLog

        db = open_database(settings_of(ctx))
        result = AuditLog(db).verify()
        db.dispose()
    if format == "json":
        typer.echo(json.dumps(vars(result)))
    elif result.ok:
        typer.echo(f"audit log intact: {result.entries} entries")
    else:
        typer.echo(
            f"audit log BROKEN at entry {result.first_broken_seq}: {result.reason}", err=True
        )
    if not result.ok:
        raise typer.Exit(code=1)
