"""``radpilot demo`` (what ``make demo`` runs): the whole loop on embedded defaults.

radpilot starts (SQLite, in-process worker, DICOM receiver, web app), registers and
activates the committed reference model, sends real PneumoniaMNIST radiographs wrapped as
DICOM through the network (C-STORE into its own receiver), waits for the AI results and
prints where to sign in. Ctrl-C (or SIGTERM) stops everything.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from radpilot.cli.context import fail, reporting_errors, settings_of, with_overrides

__all__ = ["demo", "example_files"]

DEFAULT_MODEL = Path("models/reference/package")


def example_files(shared_data: Path | None) -> list[Path]:
    """The intake examples: pydicom-data's real files, and the shared transfer-syntax set."""
    files: list[Path] = []
    try:
        import data_store  # the pydicom-data package

        folder = Path(data_store.__file__).parent / "data"
        files += sorted(folder.glob("*.dcm"))
    except ImportError:
        typer.echo(
            "radpilot: pydicom-data not installed; `pip install pydicom-data` adds "
            "68 example files",
            err=True,
        )
    if shared_data is not None and (shared_data / "dcm_qa_ts" / "In").is_dir():
        files += sorted((shared_data / "dcm_qa_ts" / "In").iterdir())
    return files


def _say(text: str) -> None:
    typer.echo(f"radpilot demo: {text}", err=True)


def demo(
    ctx: typer.Context,
    dicom_port: Annotated[int, typer.Option(help="DICOM port of the receiver.")] = 11112,
    http_port: Annotated[int, typer.Option(help="Port of the web app.")] = 8000,
    studies: Annotated[int, typer.Option(min=1, max=600, help="Demo studies to send.")] = 30,
    positive_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Fraction of pneumonia cases among them.")
    ] = 0.3,
    model: Annotated[Path, typer.Option(help="The model package to activate.")] = DEFAULT_MODEL,
    shared_data: Annotated[
        Path | None,
        typer.Option(help="The shared data folder [default: ../shared/data if present]."),
    ] = None,
    examples: Annotated[
        bool, typer.Option(help="Also send pydicom-data and dcm_qa_ts (intake examples).")
    ] = False,
    keep_running: Annotated[
        bool, typer.Option(help="Keep serving after the results are in, until Ctrl-C.")
    ] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the results.")] = 300.0,
) -> None:
    """Start radpilot, send demo studies by C-STORE, wait for the AI, print the sign-in."""
    settings = with_overrides(
        settings_of(ctx), dicom_port=dicom_port, http_port=http_port, study_quiet_seconds=2.0
    )
    shared = shared_data or (Path.cwd().parent / "shared" / "data")
    npz = shared / "pneumoniamnist" / "pneumoniamnist.npz"
    if not npz.is_file():
        fail(f"{npz} not found; pass --shared-data (the folder with pneumoniamnist/)")
    if not (model / "radpilot-model.yaml").is_file():
        fail(f"no model package at {model}; run from the repository root or pass --model")
    started = time.monotonic()
    with reporting_errors():
        from radpilot.dicom.scu import send_files
        from radpilot.pipeline import demo as loop
        from radpilot.pipeline.service import Service

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        from radpilot.store import Database

        db = Database(settings.effective_database_url)
        db.migrate()
        version = loop.install_model(db, settings, model)
        loop.write_rules(settings, version.name)
        users = loop.demo_users(db)
        db.dispose()
        _say(
            f"model {version.name} {version.version} active; routing {settings.routing_rules_path}"
        )
        made = loop.make_studies(npz, settings.data_dir / "demo-studies", studies, positive_rate)
        service = Service(settings)
        service.start()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        try:
            port = service.receiver.port
            files = [path for path, _ in made]
            if examples:
                files += example_files(shared if shared.is_dir() else None)
            _say(f"sending {len(files)} files by C-STORE to {settings.ae_title} on port {port}")
            report = send_files(
                files, "127.0.0.1", port, called_ae_title=settings.ae_title,
                calling_ae_title="DEMO_MODALITY",
            )  # fmt: skip
            refused = sum(report.statuses.values()) - report.succeeded
            _say(f"{report.succeeded} accepted, {refused} refused with a failure status")
            done = loop.wait_for_results(service.db, [uid for _, uid in made], timeout=timeout)
            web = service.web.port if service.web is not None else http_port
            typer.echo(
                f"radpilot demo: ready in {time.monotonic() - started:.0f} s: "
                f"{done.results} AI results ({done.positives} above the operating point, "
                f"{done.failed} failed)"
            )
            typer.echo(f"Open http://127.0.0.1:{web}/worklist and sign in:")
            for user in users:
                typer.echo(
                    f"  {user.role.value:<12} user {user.username}  password {user.password}"
                )
            if keep_running:
                typer.echo("Ctrl-C stops radpilot.")
                stop.wait()
        finally:
            service.stop()
    _say("stopped")
