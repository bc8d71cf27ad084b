"""``radpilot worker``: a Celery worker running inference jobs (scale-out mode)."""

from __future__ import annotations

from typing import Annotated

import typer

from radpilot.cli.context import reporting_errors, settings_of, with_overrides

__all__ = ["worker"]


def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Jobs run at once by this worker (threads).")
    ] = 1,
    broker: Annotated[
        str | None,
        typer.Option(help="Broker URL, redis://… or amqp://… [default: RADPILOT_BROKER_URL]."),
    ] = None,
) -> None:
    """Run jobs published by `radpilot serve` (with RADPILOT_WORKER_MODE=celery).

    Needs the same database (RADPILOT_DATABASE_URL) and data dir as the server. Runs until
    interrupted; a job this worker was running when killed is re-run by another worker
    once its heartbeat lease (RADPILOT_JOB_LEASE_SECONDS) has passed.
    """
    with reporting_errors():
        settings = with_overrides(settings_of(ctx), **({"broker_url": broker} if broker else {}))
        from radpilot.pipeline.celery_app import WorkerState, make_celery, worker_argv

        state = WorkerState(settings)
        app = make_celery(settings, state)
        typer.echo(
            f"radpilot worker: {concurrency} thread(s), broker {_redact(settings.broker_url)}",
            err=True,
        )
        try:
            app.worker_main(worker_argv(settings, concurrency))
        finally:
            state.heartbeat.stop()
            state.db.dispose()


def _redact(url: str) -> str:
    """The broker URL without its password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"
