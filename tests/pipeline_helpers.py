"""Real studies and model rows for the pipeline tests.

Studies are PneumoniaMNIST's real radiographs wrapped as DX DICOM by
:mod:`radpilot.data.synth` and imported through the real intake (archive + index), so
that jobs find real files where the runner will look for them.
"""

from __future__ import annotations

from pathlib import Path

from pydicom import Dataset

from radpilot.core.settings import Settings
from radpilot.data.synth import SynthCase, pneumoniamnist_cases, radiograph
from radpilot.dicom.ingest import ingest_sources
from radpilot.dicom.sources import collect_sources
from radpilot.pipeline.service import build_intake
from radpilot.store import Database
from radpilot.store.models_pipeline import ModelState, ModelVersion
from tests.conftest import shared_data


def cases(count: int, split: str = "test", start: int = 0) -> list[SynthCase]:
    """Real PneumoniaMNIST cases (skips or fails without the shared data)."""
    npz = shared_data("pneumoniamnist", "pneumoniamnist.npz")
    return list(pneumoniamnist_cases(npz, split, count=count, start=start))


def write_studies(folder: Path, datasets: list[Dataset]) -> list[Path]:
    """Save ``datasets`` as Part 10 files under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, dataset in enumerate(datasets):
        path = folder / f"{index:04d}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def radiographs(count: int, size: int = 128, start: int = 0) -> list[Dataset]:
    """``count`` one-image chest radiograph studies."""
    return [radiograph(case, size=size) for case in cases(count, start=start)]


def ingest(settings: Settings, db: Database, paths: list[Path]) -> int:
    """Import ``paths`` through the real intake; returns how many were imported."""
    intake = build_intake(settings, db)
    intake.start()
    try:
        summary = ingest_sources(collect_sources(paths), intake)
    finally:
        intake.stop()
    return summary.imported


def model_row(
    db: Database, name: str, version: str = "1", state: ModelState = ModelState.ACTIVE
) -> int:
    """A registry row without a package (for routing and job tests only)."""
    with db.session() as session:
        row = ModelVersion(
            name=name,
            version=version,
            task="classification",
            runtime="torchscript",
            manifest={},
            weights_sha256="0" * 64,
            package_path=f"models/{name}/{version}",
            added_by="test",
            state=state,
            state_changed_by="test",
        )
        session.add(row)
        session.flush()
        return row.id
