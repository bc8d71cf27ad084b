"""``radpilot outcomes``: final reports and later labels, as outcome reads of studies."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from radpilot.cli.context import current_user, database, fail, reporting_errors

__all__ = ["app"]

app = typer.Typer(help="Outcomes: final report labels (docs/monitoring.md).", no_args_is_help=True)


@app.command("import")
def import_(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(
            help="CSV: study_instance_uid or accession_number, "
            "label or report_text, [source, reported_at]."
        ),
    ],
) -> None:
    """Import outcomes from a CSV; prints what was stored and what was refused, and why."""
    from radpilot.monitoring.outcomes import import_csv

    if not path.is_file():
        fail(f"{path} not found")
    with reporting_errors(), database(ctx) as db:
        try:
            summary = import_csv(db, path, actor=f"cli:{current_user()}")
        except ValueError as exc:
            fail(str(exc))
    typer.echo(json.dumps({"stored": summary.stored, "refused": dict(summary.refused)}))


@app.command("listen")
def listen(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",  # noqa: S104
    port: Annotated[int, typer.Option(min=0, max=65535, help="MLLP port.")] = 2575,
) -> None:
    """Receive ORU^R01 final reports over MLLP until Ctrl-C."""
    from radpilot.monitoring.hl7_listener import OutcomeListener

    with reporting_errors(), database(ctx) as db:
        listener = OutcomeListener(db, host, port)
        listener.start()
        typer.echo(f"radpilot: HL7 listener on {host}:{listener.port}; Ctrl-C stops", err=True)
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
        listener.stop()
