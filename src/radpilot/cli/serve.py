"""``radpilot serve``: the DICOM receiver with its indexer and study-complete events."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from radpilot.cli.context import reporting_errors, settings_of, with_overrides

__all__ = ["serve"]


def serve(
    ctx: typer.Context,
    dicom_port: Annotated[int | None, typer.Option(help="DICOM port [default: 11112].")] = None,
    ae_title: Annotated[str | None, typer.Option(help="Our AE title [default: RADPILOT].")] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind [default: 0.0.0.0].")] = None,
) -> None:
    """Receive DICOM (C-ECHO, C-STORE), archive and index it, announce complete studies.

    Runs until interrupted (Ctrl-C or SIGTERM), then finishes indexing what it accepted.
    """
    base = settings_of(ctx)
    overrides = {
        k: v
        for k, v in (("dicom_port", dicom_port), ("ae_title", ae_title), ("dicom_host", host))
        if v is not None
    }
    with reporting_errors():
        settings = with_overrides(base, **overrides)
        from radpilot.pipeline.service import IntakeService

        service = IntakeService(settings)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        service.start()
        typer.echo(
            f"radpilot: receiving DICOM as {settings.ae_title} on port "
            f"{service.receiver.port}; data in {settings.data_dir}",
            err=True,
        )
        try:
            stop.wait()
        finally:
            typer.echo("radpilot: stopping; finishing the index", err=True)
            service.stop()
