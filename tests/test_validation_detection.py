"""Validation of detection models: box matching, FROC with CIs, and ``radpilot validate``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from pypdf import PdfReader
from typer.testing import CliRunner

from radpilot.cli.main import _register, app
from radpilot.models.prediction import Box, ImageRef
from radpilot.validation.cases import ValidationDataError
from radpilot.validation.detection import RefBox, evaluate_detection, iou, reference_boxes
from tests import model_factory as mf

IMAGE = ImageRef("1.2.3", "1.2.840.10008.5.1.4.1.1.7", "1.2.4")


def box(x0: float, y0: float, x1: float, y1: float, score: float = 0.9) -> Box:
    return Box("nodule", score, IMAGE, x0, y0, x1, y1)


def test_iou_and_greedy_matching_by_score() -> None:
    assert iou(box(0, 0, 10, 10), box(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou(box(0, 0, 10, 10), box(10, 0, 20, 10)) == 0.0
    refs = [RefBox("nodule", 0, 0, 10, 10), RefBox("nodule", 50, 50, 60, 60)]
    detections = [
        box(1, 1, 11, 11, score=0.6),  # overlaps the first reference, lower score
        box(0, 0, 10, 10, score=0.9),  # takes the first reference
        box(51, 51, 61, 61, score=0.3),
        box(100, 100, 110, 110, score=0.8),  # nothing there
    ]
    result = evaluate_detection([(detections, refs)], ["nodule"], bootstrap=50)
    entry = result["labels"]["nodule"]
    assert entry["lesions"] == 2
    # by score: 0.9 hit, 0.8 FP, 0.6 FP (its reference is taken), 0.3 hit
    assert [round(c["fp_per_image"]) for c in entry["curve"]] == [0, 1, 2, 2]
    assert [c["sensitivity"] for c in entry["curve"]] == [0.5, 0.5, 0.5, 1.0]
    assert entry["false_positives"] == 2
    assert entry["sensitivity_at_fp"]["1"]["value"] == 0.5
    assert entry["sensitivity_at_fp"]["2"]["value"] == 1.0


def test_bootstrap_intervals_cover_the_estimate_and_narrow_with_more_images() -> None:
    rng = np.random.default_rng(2)

    def images(n: int) -> list[tuple[list[Box], list[RefBox]]]:
        out = []
        for _ in range(n):
            found = rng.random() < 0.7
            dets = [box(0, 0, 10, 10, float(rng.uniform(0.5, 1)))] if found else []
            dets += [box(40, 40, 50, 50, float(rng.uniform(0, 0.6)))] * int(rng.random() < 0.5)
            out.append((dets, [RefBox("nodule", 0, 0, 10, 10)]))
        return out

    small = evaluate_detection(images(40), ["nodule"], bootstrap=400)["labels"]["nodule"]
    large = evaluate_detection(images(400), ["nodule"], bootstrap=400)["labels"]["nodule"]
    for entry in (small, large):
        at = entry["sensitivity_at_fp"]["1"]
        assert at["low"] <= at["value"] <= at["high"]
    width = lambda e: e["sensitivity_at_fp"]["1"]["high"] - e["sensitivity_at_fp"]["1"]["low"]  # noqa: E731
    assert width(large) < width(small) / 2


def test_reference_rows_are_checked() -> None:
    rows = [
        {"sop_instance_uid": "1.2", "label": "Nodule", "x0": "1", "y0": "2", "x1": "5", "y1": "6"},
        {"sop_instance_uid": "1.2", "label": "nodule", "x0": "5", "y0": "2", "x1": "1", "y1": "6"},
        {"sop_instance_uid": "", "label": "nodule", "x0": "1", "y0": "2", "x1": "5", "y1": "6"},
        {"sop_instance_uid": "1.3", "label": "nodule", "x0": "a", "y0": "2", "x1": "5", "y1": "6"},
        {"sop_instance_uid": "1.4", "label": "nodule", "frame": "3", "x0": "0", "y0": "0",
         "x1": "2", "y1": "2"},
        {"sop_instance_uid": "1.5", "label": "nodule"},  # read, no lesion
    ]  # fmt: skip
    boxes, excluded = reference_boxes(rows)
    assert boxes == {("1.2", 1): [RefBox("nodule", 1, 2, 5, 6)],
                     ("1.4", 3): [RefBox("nodule", 0, 0, 2, 2)], ("1.5", 1): []}  # fmt: skip
    assert sorted(e.reason for e in excluded) == [
        "no sop_instance_uid or label",
        "not a box (x1 <= x0 or y1 <= y0)",
        "x0, y0, x1, y1 (or frame) missing or not numbers",
    ]
    with pytest.raises(ValidationDataError):
        reference_boxes(rows[1:4])


def run(*args: str) -> Any:
    _register()
    return CliRunner().invoke(app, list(args))


def painted_study(folder: Path, k: int, rect: tuple[slice, slice]) -> pydicom.Dataset:
    rng = np.random.default_rng(k)
    pixels = rng.integers(100, 400, size=(128, 128)).astype(np.uint16)
    pixels[rect] = 4000
    ds = mf.image_dataset(pixels, study_uid=generate_uid())
    ds.PatientID, ds.PatientName = f"DET-{k}", "Test^Detection"
    ds.save_as(folder / f"{k}.dcm", enforce_file_format=True)
    return ds


def test_cli_validates_a_detection_model_against_reference_boxes(tmp_path: Path) -> None:
    data, studies, out = tmp_path / "rp", tmp_path / "studies", tmp_path / "report"
    studies.mkdir()
    rect = (slice(30, 50), slice(70, 110))  # rows 30-50, columns 70-110
    datasets = [painted_study(studies, k, rect) for k in range(6)]
    assert run("--data-dir", str(data), "ingest", str(studies)).exit_code == 0
    manifest = mf.manifest_dict(
        "bright-boxes", "detection", "torchscript", "model.pt", ["bright"], [64, 64],
        output={"operating_points": [{"name": "op", "label": "bright", "threshold": 0.5}]},
    )  # fmt: skip
    package = mf.package(tmp_path / "pkg", mf.BrightBoxDetector(), manifest, script=True)
    assert run("--data-dir", str(data), "models", "add", str(package)).exit_code == 0
    reference = tmp_path / "boxes.csv"
    rows = [{"sop_instance_uid": str(ds.SOPInstanceUID), "label": "bright",
             "x0": 70, "y0": 30, "x1": 110, "y1": 50} for ds in datasets[:4]]  # fmt: skip
    rows.append(
        {
            "sop_instance_uid": str(datasets[4].SOPInstanceUID),
            "label": "bright",
            "x0": 0,
            "y0": 100,
            "x1": 20,
            "y1": 120,
        }
    )  # missed; its detection is a FP
    no_lesion = {"x0": "", "y0": "", "x1": "", "y1": ""}  # read, nothing found
    rows.append(
        {"sop_instance_uid": str(datasets[5].SOPInstanceUID), "label": "bright", **no_lesion}
    )
    rows.append(
        {"sop_instance_uid": generate_uid(), "label": "bright", "x0": 0, "y0": 0, "x1": 5, "y1": 5}
    )  # an image radpilot does not hold
    rows.append({"sop_instance_uid": "1.2.3", "label": "bright",
                 "x0": 9, "y0": 0, "x1": 5, "y1": 5})  # not a box  # fmt: skip
    with reference.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    done = run("--data-dir", str(data), "validate", "--model", "bright-boxes",
               "--reference-boxes", str(reference), "--output", str(out),
               "--bootstrap", "200")  # fmt: skip
    assert done.exit_code == 0, done.output
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "detection"
    entry = report["detection"]["labels"]["bright"]
    # 6 images, 5 reference lesions: 4 found, 1 missed; 2 false positives (images 4 and 5)
    assert report["detection"]["images"] == 6, (report["excluded_by_reason"], entry)
    assert (entry["lesions"], entry["detections"], entry["false_positives"]) == (5, 6, 2)
    assert entry["sensitivity_at_fp"]["0.5"]["value"] == pytest.approx(0.8)
    assert report["excluded_by_reason"] == {
        "image not in this installation": 1,
        "not a box (x1 <= x0 or y1 <= y0)": 1,
    }
    html = (out / "report.html").read_text()
    assert "FROC" in html and "<svg" in html
    assert not any(str(ds.SOPInstanceUID) in html for ds in datasets)
    text = " ".join(page.extract_text() for page in PdfReader(out / "report.pdf").pages)
    assert "false positives per image" in text
