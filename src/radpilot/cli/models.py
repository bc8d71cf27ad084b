"""``radpilot models add|list|show|set-state``: the model registry from the command line."""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from radpilot.cli.context import current_user, database, fail, settings_of
from radpilot.models.registry import Registry, parse_label
from radpilot.store.models_pipeline import AuditEntry, ModelState, ModelVersion

__all__ = ["add_command", "app", "list_command", "set_state_command", "show_command"]

#: How the embedded default's transitions are recorded in the audit log.
DIRECT = "none (embedded default: an administrator's direct action)"

app = typer.Typer(
    help="Model packages: register them, list and show them, move them through their "
    "lifecycle (registered, shadow, pilot, active, suspended, retired).",
    no_args_is_help=True,
)


class OutputFormat(enum.StrEnum):
    """How a command prints what it found."""

    TABLE = "table"
    JSON = "json"


FormatOption = Annotated[
    OutputFormat, typer.Option("--format", case_sensitive=False, help="table or json.")
]


@contextmanager
def _registry(ctx: typer.Context) -> Iterator[Registry]:
    with database(ctx) as db:
        yield Registry(db, settings_of(ctx).models_dir)


def _when(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="seconds")


def _row(version: ModelVersion) -> dict[str, Any]:
    return {
        "name": version.name,
        "version": version.version,
        "task": version.task,
        "runtime": version.runtime,
        "use_case": version.use_case,
        "state": version.state.value,
        "weights_sha256": version.weights_sha256,
        "added_by": version.added_by,
        "added_at": _when(version.added_at),
        "state_changed_by": version.state_changed_by,
        "state_changed_at": _when(version.state_changed_at),
        "package_path": version.package_path,
    }


def _emit(output_format: OutputFormat, data: Any, table: Callable[[], None]) -> None:
    if output_format is OutputFormat.JSON:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        table()


@app.command("add")
def add_command(
    ctx: typer.Context,
    package: Annotated[
        Path,
        typer.Argument(
            help="Package folder, or .zip / .tar.gz archive (docs/models.md).", exists=True
        ),
    ],
    by: Annotated[str | None, typer.Option(help="Who adds it [default: login name].")] = None,
    output_format: FormatOption = OutputFormat.TABLE,
) -> None:
    """Register a model PACKAGE (state: registered) and copy it into the data dir."""
    with _registry(ctx) as registry:
        known = {v.id for v in registry.list()}
        version = registry.add(package, by or current_user())
    new = version.id not in known
    data = {**_row(version), "new": new}

    def table() -> None:
        what = "registered" if new else "already registered (same weights)"
        typer.echo(
            f"{version.label} {what}: {version.task}, {version.runtime}, "
            f"sha256 {version.weights_sha256}, state {version.state.value}"
        )

    _emit(output_format, data, table)


@app.command("list")
def list_command(ctx: typer.Context, output_format: FormatOption = OutputFormat.TABLE) -> None:
    """List every registered model version with its state."""
    with _registry(ctx) as registry:
        versions = registry.list()

    def table() -> None:
        out = Table(title="radpilot models")
        for column in ("model", "task", "runtime", "state", "sha256", "added", "by"):
            out.add_column(column, overflow="fold")
        for v in versions:
            out.add_row(
                Text(v.label),
                v.task,
                v.runtime,
                v.state.value,
                v.weights_sha256[:12],
                _when(v.added_at),
                Text(v.added_by),
            )
        Console().print(out)

    _emit(output_format, [_row(v) for v in versions], table)


@app.command("show")
def show_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="NAME or NAME:VERSION (default: newest).")],
    output_format: FormatOption = OutputFormat.TABLE,
) -> None:
    """Show one model version: registry row, manifest and lifecycle history."""
    name, version_name = parse_label(model)
    with _registry(ctx) as registry:
        version = registry.get(name, version_name)
        with registry.db.session() as session:
            entries = session.scalars(
                select(AuditEntry)
                .where(AuditEntry.subject == version.label, AuditEntry.kind.like("model.%"))
                .order_by(AuditEntry.seq)
            ).all()
            history = [
                {"at": _when(e.at), "kind": e.kind, "actor": e.actor, **e.payload} for e in entries
            ]
    data = {**_row(version), "manifest": version.manifest, "history": history}

    def table() -> None:
        out = Table(title=version.label, show_header=False)
        out.add_column("field")
        out.add_column("value", overflow="fold")
        for key, value in _row(version).items():
            out.add_row(key, Text(str(value)))
        manifest = version.manifest
        out.add_row("intended use", Text(str(manifest.get("intended_use", ""))))
        out.add_row("labels", Text(", ".join(manifest.get("output", {}).get("labels", []))))
        for item in history:
            change = f"{item.get('from', '')} -> {item.get('to', '')}" if "to" in item else ""
            reason = f" ({item['reason']})" if item.get("reason") else ""
            out.add_row(
                str(item["at"]), Text(f"{item['kind']} by {item['actor']} {change}{reason}")
            )
        Console().print(out)

    _emit(output_format, data, table)


@app.command("set-state")
def set_state_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="NAME:VERSION.")],
    state: Annotated[ModelState, typer.Argument(case_sensitive=False, help="The new state.")],
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit log).")] = None,
    by: Annotated[str | None, typer.Option(help="Who decides [default: login name].")] = None,
    output_format: FormatOption = OutputFormat.TABLE,
) -> None:
    """Move NAME:VERSION to STATE at once (embedded installations): shadow runs unseen,
    pilot and active run and deliver, suspended stops, retired never runs again (final)."""
    name, version_name = parse_label(model)
    if version_name is None:
        raise typer.BadParameter("name the version: NAME:VERSION", param_hint="MODEL")
    if settings_of(ctx).governance == "governed":
        fail(
            "this installation is governed (RADPILOT_GOVERNANCE=governed): request the "
            "transition through the web API and have it approved (docs/governance.md)"
        )
    with _registry(ctx) as registry:
        before = registry.get(name, version_name).state
        version = registry.set_state(
            name, version_name, state, by or current_user(), reason, approval=DIRECT
        )
    data = {**_row(version), "previous_state": before.value}

    def table() -> None:
        if before is version.state:
            typer.echo(f"{version.label} is already {version.state.value}")
        else:
            typer.echo(f"{version.label}: {before.value} -> {version.state.value}")

    _emit(output_format, data, table)
