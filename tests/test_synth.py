"""Synthetic radiograph studies: real pixels, valid DICOM, deterministic, labelled."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np
import pydicom

from radpilot.data.synth import radiograph
from tests.conftest import require_tool, shared_data
from tests.pipeline_helpers import cases


def test_upsampled_pixels_keep_the_real_image() -> None:
    case = cases(1, start=5)[0]
    ds = radiograph(case, size=280)
    pixels = ds.pixel_array.astype(float)
    assert pixels.shape == (280, 280) and ds.BitsStored == 12 and pixels.max() <= 4095
    # Sampling the upsampled image back at the source grid gives the source pixels.
    grid = np.rint(np.linspace(0, 279, 28)).astype(int)
    back = pixels[np.ix_(grid, grid)] * 255 / 4095
    assert np.abs(back - case.image.astype(float)).max() < 6
    assert ds.ImageComments.endswith(f"(label {case.label})")


def test_same_case_same_bytes_other_seed_other_uids() -> None:
    case = cases(1)[0]
    a, b, c = radiograph(case), radiograph(case), radiograph(case, seed="other")
    assert a.SOPInstanceUID == b.SOPInstanceUID and a.PixelData == b.PixelData
    assert c.StudyInstanceUID != a.StudyInstanceUID


def test_cli_writes_valid_studies_with_the_asked_mix(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from radpilot.cli.main import _register, app

    _register()
    archive = shared_data("pneumoniamnist", "pneumoniamnist.npz")
    result = CliRunner().invoke(
        app,
        [
            "synth",
            str(tmp_path),
            "--count",
            "10",
            "--positive-rate",
            "0.3",
            "--size",
            "64",
            "--npz",
            str(archive),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "labels.csv").read_text().splitlines()))
    assert len(rows) == 10 and sum(int(r["label"]) for r in rows) == 3
    files = sorted(tmp_path.glob("*.dcm"))
    uids = {str(pydicom.dcmread(f).StudyInstanceUID) for f in files}
    assert uids == {r["study_instance_uid"] for r in rows}
    dciodvfy = require_tool("dciodvfy")
    report = subprocess.run([dciodvfy, str(files[0])], capture_output=True, text=True, check=False)
    errors = [
        line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")
    ]
    assert errors == []
