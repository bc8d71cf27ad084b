"""Shared pieces of the result-writer tests (tests/test_results_*.py): real images, checks."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from radpilot.models.prediction import ImageRef
from radpilot.results.context import ResultContext
from tests.conftest import pydicom_data_files, require_tool

#: A weight hash computed, not typed: the SR must carry exactly this string.
WEIGHTS_SHA256 = hashlib.sha256(b"radpilot test weights v1").hexdigest()


def make_ctx(result_key: str = "study-1:chest-xr@1.2.0:all", **changes: Any) -> ResultContext:
    """A context for a fictional chest model (name, version and hash checked in tests)."""
    values: dict[str, Any] = {
        "model_name": "chest-xr",
        "model_version": "1.2.0",
        "weights_sha256": WEIGHTS_SHA256,
        "manufacturer": "radpilot tests",
        "task": "classification",
        "operating_point": "high-sensitivity",
        "result_key": result_key,
        "institution_name": "Test Hospital",
    }
    values.update(changes)
    return ResultContext(**values)


def pydicom_file(name: str, **kwargs: Any) -> Dataset:
    """One of pydicom's own test files (bundled in the wheel, no download)."""
    path = get_testdata_file(name)
    assert path is not None, name
    return pydicom.dcmread(path, **kwargs)


def data_store_file(name: str, **kwargs: Any) -> Dataset:
    """One of pydicom-data's files (skips with the reason when the package is absent)."""
    by_name = {p.name: p for p in pydicom_data_files()}
    return pydicom.dcmread(by_name[name], **kwargs)


def ct_series() -> list[Dataset]:
    """A real 5-slice CT series (16x16, from pydicom's DICOMDIR tests), in file order."""
    folder = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests"
    files = sorted((folder / "98892001" / "CT5N").iterdir())
    return [pydicom.dcmread(p) for p in files]


def ref_of(ds: Dataset, frame: int = 1) -> ImageRef:
    """The ImageRef of a dataset (and frame)."""
    return ImageRef(
        sop_instance_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        series_instance_uid=str(ds.SeriesInstanceUID),
        frame=frame,
    )


def write(ds: Dataset, path: Path) -> Path:
    """Save as a Part 10 file, as the runner does (``enforce_file_format=True``)."""
    ds.save_as(path, enforce_file_format=True)
    return path


def dciodvfy_errors(path: Path) -> list[str]:
    """The ``Error`` lines dicom3tools' validator prints for a file (warnings are allowed)."""
    tool = require_tool("dciodvfy")
    run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


def _value(item: Dataset) -> Any:
    kind = item.ValueType
    if kind == "TEXT":
        return item.TextValue
    if kind == "NUM":
        measured = item.MeasuredValueSequence[0]
        return float(measured.get("FloatingPointValue", measured.NumericValue))
    if kind == "CODE":
        return item.ConceptCodeSequence[0].CodeMeaning
    if kind == "UIDREF":
        return str(item.UID)
    return None


def content_items(node: Dataset) -> Iterator[tuple[str, Any]]:
    """(concept name meaning, value) of every item of an SR content tree, depth first."""
    for item in node.get("ContentSequence", []):
        names = item.get("ConceptNameCodeSequence")
        name = names[0].CodeMeaning if names else ""
        yield name, _value(item)
        yield from content_items(item)
