"""``radpilot demo``: start the receiver and load example DICOM into it over the network."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from radpilot.cli.context import fail, reporting_errors, settings_of, with_overrides

__all__ = ["demo", "example_files"]


def example_files(shared_data: Path | None) -> list[Path]:
    """The example DICOM: pydicom-data's real files, and the shared transfer-syntax set."""
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


def demo(
    ctx: typer.Context,
    dicom_port: Annotated[int, typer.Option(help="DICOM port of the demo receiver.")] = 11112,
    shared_data: Annotated[
        Path | None,
        typer.Option(
            help="The shared data folder with dcm_qa_ts/ [default: ../shared/data if present]."
        ),
    ] = None,
    keep_running: Annotated[
        bool, typer.Option(help="Keep receiving after loading, until Ctrl-C.")
    ] = True,
) -> None:
    """Start radpilot on embedded defaults, send example DICOM to it, show the inventory."""
    settings = with_overrides(settings_of(ctx), dicom_port=dicom_port, study_quiet_seconds=3.0)
    shared = shared_data or (Path.cwd().parent / "shared" / "data")
    files = example_files(shared if shared.is_dir() else None)
    if not files:
        fail("no example DICOM found; install pydicom-data or pass --shared-data")
    with reporting_errors():
        from radpilot.cli.inventory import print_table
        from radpilot.data.inventory import build_inventory
        from radpilot.dicom.scu import send_files
        from radpilot.pipeline.service import IntakeService

        service = IntakeService(settings)
        service.start()
        try:
            typer.echo(
                f"radpilot demo: receiver {settings.ae_title} on port "
                f"{service.receiver.port}, data in {settings.data_dir}",
                err=True,
            )
            typer.echo(f"radpilot demo: sending {len(files)} example files by C-STORE", err=True)
            report = send_files(
                files,
                "127.0.0.1",
                service.receiver.port,
                called_ae_title=settings.ae_title,
                calling_ae_title="DEMO_SCU",
            )
            service.intake.flush(timeout=120)
            typer.echo(
                f"radpilot demo: {report.succeeded} accepted, "
                f"{sum(report.statuses.values()) - report.succeeded} refused with a "
                f"failure status, {sum(report.unsent.values())} not sendable",
                err=True,
            )
            with service.db.session() as session:
                print_table(build_inventory(session))
            if keep_running:
                typer.echo(
                    f"radpilot demo: still receiving on port {service.receiver.port}"
                    "; send more with e.g. `storescu -aec RADPILOT 127.0.0.1 "
                    f"{service.receiver.port} FILE`; Ctrl-C stops",
                    err=True,
                )
                stop = threading.Event()
                signal.signal(signal.SIGTERM, lambda *_: stop.set())
                signal.signal(signal.SIGINT, lambda *_: stop.set())
                stop.wait()
        finally:
            service.stop()
