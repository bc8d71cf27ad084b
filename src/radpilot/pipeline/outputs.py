"""Write one result's objects (SR, key image, SEG, derived series, reports, heatmap).

Files go under ``<data_dir>/results/<model>/<version>/<result key>/`` with names that
depend only on the result, written to a temporary name and renamed, so a re-run of the
same job writes the same bytes to the same place and never a second copy.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset

from radpilot.models.manifest import Task
from radpilot.models.prediction import Prediction
from radpilot.results.context import ResultContext
from radpilot.results.derived import build_derived_series
from radpilot.results.keyimage import build_key_image
from radpilot.results.report import StudyInfo, fhir_report, report_text
from radpilot.results.seg import build_seg, has_segments
from radpilot.results.sr import build_sr
from radpilot.store.archive import fsync_dir

__all__ = ["OutputFile", "write_outputs"]


@dataclass(frozen=True)
class OutputFile:
    """One file written for a result."""

    kind: str  # sr, sc, seg, derived, text, fhir, heatmap
    name: str
    relative_path: str  # to the data dir
    media_type: str
    sha256: str
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None


def _atomic_write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def _dicom_bytes(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


class _Writer:
    def __init__(self, data_dir: Path, folder: Path) -> None:
        self.data_dir = data_dir
        self.folder = folder
        self.files: list[OutputFile] = []

    def dicom(self, kind: str, name: str, dataset: Dataset) -> None:
        path = self.folder / f"{name}.dcm"
        sha = _atomic_write(path, _dicom_bytes(dataset))
        self.files.append(
            OutputFile(
                kind,
                name,
                str(path.relative_to(self.data_dir)),
                "application/dicom",
                sha,
                str(dataset.SOPInstanceUID),
                str(dataset.SOPClassUID),
            )
        )

    def other(self, kind: str, name: str, data: bytes, media_type: str) -> None:
        path = self.folder / name
        sha = _atomic_write(path, data)
        self.files.append(
            OutputFile(kind, name, str(path.relative_to(self.data_dir)), media_type, sha)
        )


def write_outputs(
    prediction: Prediction,
    sources: Sequence[Dataset],
    ctx: ResultContext,
    study: StudyInfo,
    data_dir: Path,
    folder: Path,
    *,
    phase: str = "all",
) -> list[OutputFile]:
    """Build and write the objects of one ``phase`` of a result.

    ``primary``: what triage needs at once, the SR and the report snippets.
    ``secondary``: the pictures, which may take longer (heatmap, key image, SEG, derived
    series). ``all``: both.

    Returns
    -------
    list[OutputFile]
        What was written, in a stable order.

    Raises
    ------
    OSError
        If the results folder cannot be written.
    """
    writer = _Writer(data_dir, folder)
    task = Task(prediction.task)
    if phase in ("primary", "all"):
        writer.dicom("sr", "sr", build_sr(prediction, sources, ctx))
        text = report_text(prediction, ctx, study).encode()
        writer.other("text", "report.txt", text, "text/plain")
        fhir = json.dumps(fhir_report(prediction, ctx, study), indent=2, sort_keys=True)
        writer.other("fhir", "report.fhir.json", fhir.encode(), "application/fhir+json")
    if phase in ("secondary", "all"):
        if prediction.heatmap is not None:
            buffer = io.BytesIO()
            np.save(buffer, prediction.heatmap.astype(np.float16), allow_pickle=False)
            writer.other("heatmap", "heatmap.npy", buffer.getvalue(), "application/x-npy")
        if task in (Task.CLASSIFICATION, Task.DETECTION, Task.SEGMENTATION):
            writer.dicom("sc", "key-image", build_key_image(prediction, sources, ctx))
        if task is Task.SEGMENTATION and has_segments(prediction):
            writer.dicom("seg", "seg", build_seg(prediction, sources, ctx))
        if task is Task.ENHANCEMENT:
            for index, dataset in enumerate(build_derived_series(prediction, sources, ctx)):
                writer.dicom("derived", f"derived-{index:05d}", dataset)
    if writer.files:
        fsync_dir(folder)  # the renames: the database will say these files exist
    return writer.files
