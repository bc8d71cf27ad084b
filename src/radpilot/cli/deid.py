"""``radpilot deid IN OUT``: de-identify a file tree (DICOM PS3.15 Annex E).

The key is the installation's ``deid_key`` setting (``RADPILOT_DEID_KEY``); the options
default to the ``deid_*`` settings. Quarantined files go to ``--quarantine DIR``, by
default ``<data dir>/quarantine/deid-<UTC time>/``, inside the installation directory
that already holds identifiable data, never next to the output that may be shared.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from radpilot.cli.context import fail, open_database, reporting_errors, settings_of
from radpilot.core.settings import DeidOptions, Settings
from radpilot.dicom.deid import Deidentifier, DeidRunRecord, deidentify_tree
from radpilot.store.models import DeidRun

__all__ = ["deid"]

_NO_KEY = (
    "no de-identification key: set RADPILOT_DEID_KEY (or deid_key in the RADPILOT_CONFIG "
    "file) to a long random secret, the same on every machine that must agree on "
    "pseudonyms, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
)


def _options(settings: Settings, **given: bool | None) -> DeidOptions:
    values = settings.deid_options.model_dump()
    values.update({name: value for name, value in given.items() if value is not None})
    return DeidOptions(**values)


def deid(
    ctx: typer.Context,
    in_path: Annotated[Path, typer.Argument(metavar="IN", help="Folder or file to read.")],
    out_path: Annotated[
        Path, typer.Argument(metavar="OUT", help="Folder for the de-identified files.")
    ],
    retain_dates: Annotated[
        bool | None,
        typer.Option(
            "--retain-dates/--no-retain-dates",
            help="Retain Longitudinal Temporal Information with Modified Dates: shift dates "
            "by a keyed per-patient offset (default: setting deid_retain_dates).",
        ),
    ] = None,
    retain_patient_characteristics: Annotated[
        bool | None,
        typer.Option(
            "--retain-patient-characteristics/--no-retain-patient-characteristics",
            help="Keep age, sex, size, weight ... (default: the deid_* setting).",
        ),
    ] = None,
    retain_device_identity: Annotated[
        bool | None,
        typer.Option(
            "--retain-device-identity/--no-retain-device-identity",
            help="Keep device serial numbers, station names ... (default: the deid_* setting).",
        ),
    ] = None,
    clean_descriptors: Annotated[
        bool | None,
        typer.Option(
            "--clean-descriptors/--no-clean-descriptors",
            help="Keep descriptions with identifying words redacted instead of removing "
            "them (default: setting deid_clean_descriptors, on).",
        ),
    ] = None,
    quarantine: Annotated[
        Path | None,
        typer.Option(
            "--quarantine",
            metavar="DIR",
            help="Where objects that may carry burned-in identifiers are copied for review "
            "(default: DATA_DIR/quarantine/deid-UTCTIME).",
        ),
    ] = None,
    output_format: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """De-identify every DICOM file under IN into OUT (PS3.15 Basic Profile).

    Output files are named by their new UIDs (OUT/study/series/instance.dcm); pixel data
    and transfer syntax are kept. A PHI-free record goes to OUT/deid-record.json and to
    the database. Exit status 1 if nothing could be de-identified and something was
    rejected.
    """
    if output_format not in ("table", "json"):
        raise typer.BadParameter("choose table or json", param_hint="--format")
    settings = settings_of(ctx)
    if settings.deid_key is None or not settings.deid_key.get_secret_value():
        fail(_NO_KEY)
    if not in_path.exists():
        fail("IN does not exist; give a folder or a DICOM file")
    options = _options(
        settings,
        retain_dates=retain_dates,
        retain_patient_characteristics=retain_patient_characteristics,
        retain_device_identity=retain_device_identity,
        clean_descriptors=clean_descriptors,
    )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    quarantine_dir = quarantine or settings.quarantine_dir / f"deid-{stamp}"
    with reporting_errors():
        deidentifier = Deidentifier(settings.deid_key.get_secret_value().encode(), options)
        db = open_database(settings)
        try:
            with _pydicom_logs_quiet():
                record = _run(
                    in_path,
                    out_path,
                    deidentifier,
                    quarantine_dir,
                    show=progress and output_format == "table",
                )
            summary = record.to_json()
            with db.session() as session:
                session.add(
                    DeidRun(
                        started_at=record.started_at,
                        finished_at=record.finished_at,
                        profile=record.profile[:256],
                        summary=summary,
                    )
                )
        finally:
            db.dispose()
    if output_format == "json":
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print(record, quarantine_dir)
    if record.written == 0 and record.duplicates == 0 and record.rejected:
        raise typer.Exit(code=1)


@contextmanager
def _pydicom_logs_quiet() -> Iterator[None]:
    """pydicom logs some reading problems with the file's path, which may hold a
    patient's name; the record counts those files instead."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _run(
    in_path: Path, out_path: Path, deidentifier: Deidentifier, quarantine_dir: Path, *, show: bool
) -> DeidRunRecord:
    if not show:
        return deidentify_tree(in_path, out_path, deidentifier, quarantine_dir)
    columns = (TextColumn("de-identifying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("deid", total=None)
        return deidentify_tree(
            in_path, out_path, deidentifier, quarantine_dir, progress=lambda: bar.advance(task)
        )


def _print(record: DeidRunRecord, quarantine_dir: Path) -> None:
    table = Table(title=f"radpilot deid: {record.profile}")
    table.add_column("outcome")
    table.add_column("files", justify="right")
    table.add_row("seen", str(record.seen))
    table.add_row("de-identified", str(record.written))
    for label, count in (
        ("identical duplicates", record.duplicates),
        ("same UID, other content (kept)", record.conflicts),
    ):
        if count:
            table.add_row(label, str(count))
    for label, notes in (
        ("quarantined", record.quarantined),
        ("rejected", record.rejected),
        ("skipped", record.skipped),
    ):
        for reason, count in Counter(note.reason for note in notes).most_common():
            table.add_row(f"{label}: {reason}", str(count))
    actions = ", ".join(f"{code} {count}" for code, count in sorted(record.actions.items()))
    table.add_row("elements by action", actions or "-")
    Console().print(table)
    if record.quarantined:
        typer.echo(f"quarantined files for review: {quarantine_dir}", err=True)
