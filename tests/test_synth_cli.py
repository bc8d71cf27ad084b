"""``radpilot synth`` end to end: intake accepts everything, the manifest tells the truth."""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from typer.testing import CliRunner

from radpilot.cli.main import _register, app
from radpilot.core.settings import Settings
from radpilot.data.measure import measure_mask, spacing_from_datasets
from radpilot.dicom.ingest import IngestSummary, ingest_sources
from radpilot.dicom.sources import collect_sources
from radpilot.pipeline.service import build_intake
from radpilot.store import Database
from tests.conftest import require_tool, shared_data

XRAY = [
    "--count", "8", "--size", "64", "--vary-headers", "--seed", "cli",
    "--perturb", "crop=0.8", "--perturb", "burned-in-text=AP", "--perturb", "monochrome1",
    "--perturb-fraction", "0.5", "--drift", "new-scanner", "--drift-fraction", "0.5",
]  # fmt: skip
CT = [
    "--kind", "ct", "--count", "3", "--size", "48", "--slices", "12", "--fov", "200",
    "--slice-thickness", "5", "--positive-rate", "0.67", "--vary-headers",
    "--perturb", "rotation=15", "--perturb", "low-dose=0.5",
]  # fmt: skip
#: manifest column -> DICOM keyword
HEADER_COLUMNS = {
    "modality": "Modality",
    "manufacturer": "Manufacturer",
    "model": "ManufacturerModelName",
    "software_versions": "SoftwareVersions",
    "station_name": "StationName",
    "institution": "InstitutionName",
    "protocol_name": "ProtocolName",
    "study_description": "StudyDescription",
    "series_description": "SeriesDescription",
    "body_part": "BodyPartExamined",
    "patient_id": "PatientID",
    "patient_sex": "PatientSex",
    "patient_age": "PatientAge",
    "patient_birth_date": "PatientBirthDate",
    "study_date": "StudyDate",
    "photometric": "PhotometricInterpretation",
    "burned_in_annotation": "BurnedInAnnotation",
    "rows": "Rows",
    "columns": "Columns",
}


def _synth(folder: Path, *options: str) -> dict[str, object]:
    _register()
    npz = shared_data("pneumoniamnist", "pneumoniamnist.npz")
    args = ["synth", str(folder), "--npz", str(npz), *options]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))


def _ingest(tmp_path: Path, folder: Path) -> IngestSummary:
    db = Database(f"sqlite:///{tmp_path / 'radpilot.db'}")
    db.migrate()
    intake = build_intake(Settings(data_dir=tmp_path / "data"), db)
    intake.start()
    try:
        return ingest_sources(collect_sources([folder]), intake)
    finally:
        intake.stop()
        db.dispose()


def _instances(folder: Path, row: dict[str, str]) -> list[Dataset]:
    path = folder / row["path"]
    files = sorted(path.glob("*.dcm")) if path.is_dir() else [path]
    return [pydicom.dcmread(f) for f in files]


def _check_row(folder: Path, row: dict[str, str]) -> list[Dataset]:
    datasets = _instances(folder, row)
    assert len(datasets) == int(row["instances"])
    assert {str(d.StudyInstanceUID) for d in datasets} == {row["study_instance_uid"]}
    first = datasets[0]
    for column, keyword in HEADER_COLUMNS.items():
        assert row[column] == str(first.get(keyword, "")), column
    assert float(row["kvp"]) == float(first.KVP)
    assert float(row["window_center"]) == float(first.WindowCenter)
    assert float(row["pixel_spacing_mm"]) == float(first.PixelSpacing[0])
    applied = [p["name"] for p in json.loads(row["perturbations"])]
    written = re.findall(r"; ([a-z0-9-]+)\(", first.get("DerivationDescription", ""))
    assert applied == written
    return datasets


def test_radiographs_pass_intake_and_match_the_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "xray"
    summary = _synth(folder, *XRAY)
    files = sorted(folder.glob("*.dcm"))
    assert summary["studies"] == len(files) == 8
    ingested = _ingest(tmp_path, folder)
    assert ingested.rejected == {} and ingested.imported == 8
    assert ingested.conflicts == ingested.quarantined == 0
    labels = {r["study_instance_uid"]: r for r in _rows(folder / "labels.csv")}
    rows = _rows(folder / "manifest.csv")
    assert len(rows) == 8 and set(labels) == {r["study_instance_uid"] for r in rows}
    for row in rows:
        (ds,) = _check_row(folder, row)
        assert labels[row["study_instance_uid"]]["label"] == row["label"]
        assert ds.ImageComments.endswith(f"(label {row['label']})")
        applied = json.loads(row["perturbations"])
        if applied:
            assert [p["name"] for p in applied] == ["crop", "burned-in-text", "monochrome1"]
            assert (ds.Rows, ds.BurnedInAnnotation) == (51, "YES")
            assert ds.PhotometricInterpretation == "MONOCHROME1"
        else:
            assert (ds.Rows, ds.BurnedInAnnotation, ds.PhotometricInterpretation) == (
                64,
                "NO",
                "MONOCHROME2",
            )
    drifted = {r["manufacturer"] for r in rows if r["drift"] == "new-scanner"}
    baseline = {r["manufacturer"] for r in rows if not r["drift"]}
    assert len(drifted) == 1 and baseline and not drifted & baseline
    assert 0 < sum(bool(json.loads(r["perturbations"])) for r in rows) < 8


def test_ct_phantoms_pass_intake_and_match_the_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    _synth(folder, *CT)
    rows = _rows(folder / "manifest.csv")
    assert [int(r["lesion_count"]) > 0 for r in rows].count(True) == 2
    ingested = _ingest(tmp_path, folder)
    assert ingested.rejected == {} and ingested.imported == 3 * 12
    assert ingested.skipped["not DICOM"] == 5  # the truth masks and the two CSV files
    for row in rows:
        datasets = _check_row(folder, row)
        assert row["slice_thickness_mm"] == "5.0"
        assert row["label"] == str(int(int(row["lesion_count"]) > 0))
        lesions = json.loads(row["lesions"])
        with np.load(folder / row["mask_file"]) as truth:
            masks, uids = truth["masks"], list(truth["sop_instance_uids"])
        assert uids == [str(d.SOPInstanceUID) for d in datasets]
        assert len(masks) == len(lesions) == int(row["lesion_count"])
        spacing = spacing_from_datasets(datasets)
        for mask, lesion in zip(masks, lesions, strict=True):
            measured = measure_mask(mask, spacing)
            assert measured.voxels == lesion["mask_voxels"] > 0
            assert measured.volume_ml == pytest.approx(lesion["mask_volume_ml"], abs=1e-4)
            hu = np.stack([d.pixel_array for d in datasets]).astype(float) - 1024
            assert abs(np.median(hu[mask]) - lesion["hu"]) < 10  # under low-dose noise


def test_same_seed_same_bytes_other_seed_other_uids(tmp_path: Path) -> None:
    small_ct = [*CT[:3], "2", *CT[4:]]
    outputs = []
    for name, seed in (("a", "s"), ("b", "s"), ("c", "t")):
        _synth(tmp_path / name / "xray", *XRAY[:1], "4", *XRAY[2:], "--seed", seed)
        _synth(tmp_path / name / "ct", *small_ct, "--seed", seed)
        files = sorted(p for p in (tmp_path / name).rglob("*") if p.is_file())
        outputs.append({p.relative_to(tmp_path / name): p.read_bytes() for p in files})
    assert outputs[0] == outputs[1]
    assert outputs[0].keys() == outputs[2].keys() and outputs[0] != outputs[2]
    first, other = (_rows(tmp_path / n / "ct" / "manifest.csv") for n in ("a", "c"))
    assert not {r["study_instance_uid"] for r in first} & {r["study_instance_uid"] for r in other}


def test_a_cr_radiograph_passes_dciodvfy(tmp_path: Path) -> None:
    dciodvfy = require_tool("dciodvfy")
    _synth(tmp_path, "--count", "1", "--size", "64", "--modality", "CR", "--vary-headers")
    (path,) = tmp_path.glob("*.dcm")
    report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
    output = report.stdout + report.stderr
    assert "CRImage" in output
    assert [line for line in output.splitlines() if line.startswith("Error")] == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--perturb", "sharpen"], "unknown perturbation 'sharpen'"),
        (["--perturb", "crop=2"], "crop fraction must be between 0.2 and 1"),
        (["--kind", "ct", "--size", "600"], "at most 512"),
        (["--kind", "ct", "--perturb", "monochrome1", "--size", "48", "--fov", "200"], "CT stays"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path: Path, options: list[str], message: str) -> None:
    _register()
    npz = shared_data("pneumoniamnist", "pneumoniamnist.npz")
    args = ["synth", str(tmp_path), "--npz", str(npz), "--count", "1", "--size", "32", *options]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()).replace("│", "").replace("  ", " ")
