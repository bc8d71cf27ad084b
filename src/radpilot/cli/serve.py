"""``radpilot serve``: the receiver, the jobs, delivery to PACS and the web API."""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from radpilot.cli.context import reporting_errors, settings_of, with_overrides

if TYPE_CHECKING:
    from radpilot.pipeline.service import Service

__all__ = ["serve"]

log = logging.getLogger(__name__)


def serve(
    ctx: typer.Context,
    dicom_port: Annotated[int | None, typer.Option(help="DICOM port [default: 11112].")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP port [default: 8000].")] = None,
    ae_title: Annotated[str | None, typer.Option(help="Our AE title [default: RADPILOT].")] = None,
    host: Annotated[
        str | None, typer.Option(help="Address the DICOM port binds [default: 0.0.0.0].")
    ] = None,
    web: Annotated[bool, typer.Option("--web/--no-web", help="Serve the HTTP API.")] = True,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Run inference jobs in this process (off: `radpilot worker` runs them).",
        ),
    ] = True,
) -> None:
    """Receive DICOM, run the routed models, deliver results, serve the worklist API.

    Runs until interrupted (Ctrl-C or SIGTERM), then finishes indexing what it accepted
    and the jobs in progress; undelivered results wait in the outbox for the next start.
    """
    base = settings_of(ctx)
    overrides = {
        k: v
        for k, v in (
            ("dicom_port", dicom_port),
            ("http_port", http_port),
            ("ae_title", ae_title),
            ("dicom_host", host),
        )
        if v is not None
    }
    with reporting_errors():
        settings = with_overrides(base, **overrides)
        from radpilot.pipeline.service import Service

        service = Service(settings, web=web, worker=worker)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        service.start()
        _freeze_when_warm(service)
        where = f"; API on http://{settings.http_host}:{service.web.port}" if service.web else ""
        jobs = (
            "jobs via Celery"
            if settings.worker_mode == "celery"
            else ("jobs in-process" if service.pool else "no jobs here")
        )
        typer.echo(
            f"radpilot: receiving DICOM as {settings.ae_title} on port "
            f"{service.receiver.port}{where}; {jobs}; data in {settings.data_dir}",
            err=True,
        )
        try:
            stop.wait()
        finally:
            typer.echo("radpilot: stopping; finishing the index and running jobs", err=True)
            service.stop()


def _freeze_when_warm(service: Service) -> None:
    """Take the start-up heap out of garbage collection, now and after the warm-up.

    Only here, in the long-running process: a frozen heap in a test process would keep
    every test's cyclic garbage (see :mod:`radpilot.core.heap`).
    """
    from radpilot.core.heap import freeze_startup_heap

    if not service.warmed_up.is_set():
        # Models may take a while to load: keep collections off what exists meanwhile.
        freeze_startup_heap("after start")

    def after_warm_up() -> None:
        service.warmed_up.wait()
        frozen = freeze_startup_heap("after warm-up")
        # bench/peers.py waits for this line before it measures.
        log.info("start-up done: warm-up finished, %d start-up objects frozen", frozen)

    threading.Thread(target=after_warm_up, name="radpilot-heap-freeze", daemon=True).start()
