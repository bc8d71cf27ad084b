"""``radpilot usecases add|list|show``: the clinical questions deployments answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from radpilot.cli.context import current_user, database, fail
from radpilot.store import Database
from radpilot.validation.usecase_store import add_use_case, get_use_case, list_use_cases

__all__ = ["app"]

app = typer.Typer(
    help="Use cases: the narrow clinical question, its population and the success "
    "thresholds declared before testing.",
    no_args_is_help=True,
)


@contextmanager
def _database(ctx: typer.Context) -> Iterator[Database]:
    with database(ctx) as db:
        try:
            yield db
        except LookupError as exc:
            fail(str(exc.args[0]))


@app.command("add")
def add(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Use case YAML.")],
) -> None:
    """Store a use case (a new version when its name exists with other content)."""
    with _database(ctx) as db:
        record, new = add_use_case(db, file, current_user())
    state = "added" if new else "unchanged (the same content is stored)"
    typer.echo(f"use case {record.name}:{record.version} {state}")


@app.command("list")
def list_command(ctx: typer.Context) -> None:
    """Every stored use case version."""
    with _database(ctx) as db:
        records = list_use_cases(db)
    for r in records:
        criteria = len(r.content.get("success", []))
        typer.echo(f"{r.name}:{r.version}  {r.content.get('finding')}  {criteria} criteria  "
                   f"added {r.added_at:%Y-%m-%d} by {r.added_by}")  # fmt: skip


@app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="NAME[:VERSION]")],
) -> None:
    """The stored use case as JSON."""
    base, _, version = name.partition(":")
    with _database(ctx) as db:
        record, case = get_use_case(db, base, int(version) if version.isdigit() else None)
    out = {"name": record.name, "version": record.version, "sha256": record.sha256,
           "added_by": record.added_by, **case.model_dump(mode="json", by_alias=True)}  # fmt: skip
    typer.echo(json.dumps(out, indent=1))
