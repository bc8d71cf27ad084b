"""``radpilot validate`` for a segmentation model against reference DICOM SEG files.

The studies are ``radpilot synth --kind ct`` phantoms, whose lesion masks are known; the
references are those masks written as DICOM SEG by highdicom here (not by radpilot's own
SEG writer); the model is a 3D threshold segmenter. The report's Dice per case must equal
the Dice computed here from the model's own prediction and the truth."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
import yaml
from pydicom.uid import generate_uid
from pypdf import PdfReader
from typer.testing import CliRunner

from radpilot.cli.main import _register, app
from radpilot.models.inference import load_model
from radpilot.models.package import ModelPackage
from tests import model_factory as mf


def run(*args: str) -> Any:
    _register()
    return CliRunner().invoke(app, list(args))


def reference_seg(series: Path, truth: Path, out: Path) -> None:
    """The union of the truth's lesion masks as a BINARY DICOM SEG over ``series``."""
    stored = np.load(truth)
    by_uid = {str(u): i for i, u in enumerate(stored["sop_instance_uids"])}
    datasets = [pydicom.dcmread(p) for p in sorted(series.glob("*.dcm"))]
    datasets.sort(key=lambda ds: by_uid[str(ds.SOPInstanceUID)])
    mask = stored["masks"].any(axis=0).astype(np.uint8)
    category = hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure")
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Lesion",  # the model's label is "lesion": matched case-insensitively
        segmented_property_category=category,
        segmented_property_type=hd.sr.CodedConcept("52988006", "SCT", "Lesion"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=generate_uid(),
        series_number=90,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="annotation tool",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
    )
    seg.save_as(out)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


@pytest.mark.slow
def test_segmentation_model_is_validated_against_reference_segs(tmp_path: Path) -> None:
    data, studies, refs, out = (tmp_path / n for n in ("rp", "studies", "refs", "report"))
    made = run("--data-dir", str(data), "synth", str(studies), "--kind", "ct", "--count", "4",
               "--size", "64", "--slices", "32", "--slice-thickness", "2.5", "--fov", "200",
               "--lesions", "3",
               "--positive-rate", "1")  # fmt: skip
    assert made.exit_code == 0, made.output
    with (studies / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    folders = [studies / r["path"] for r in rows]
    masks = [studies / r["mask_file"] for r in rows]
    elsewhere = tmp_path / "not-ingested"
    shutil.move(folders[-1], elsewhere)  # its reference then names a series radpilot lacks
    assert run("--data-dir", str(data), "ingest", str(studies)).exit_code == 0
    refs.mkdir()
    for k, (folder, truth) in enumerate(zip(folders, masks, strict=True)):
        reference_seg(folder if k < 3 else elsewhere, truth, refs / f"ref-{k}.dcm")
    (refs / "notes.txt").write_text("not a segmentation")
    manifest = mf.manifest_dict(
        "lesion-seg", "segmentation", "torchscript", "model.pt", ["lesion"], [32, 64, 64],
        input={"dimensions": 3, "window": {"center": 65, "width": 50}},
    )  # fmt: skip
    package = mf.package(tmp_path / "pkg", mf.ThresholdSegmenter(background=False), manifest)
    assert run("--data-dir", str(data), "models", "add", str(package)).exit_code == 0
    use_case = tmp_path / "usecase.yaml"
    use_case.write_text(yaml.safe_dump({
        "schema": "radpilot.usecase/1", "name": "lesions", "finding": "lesion",
        "success": [{"metric": "dice", "min": 0.99}, {"metric": "hd95_mm", "max": 1000}],
    }))  # fmt: skip
    done = run("--data-dir", str(data), "validate", "--model", "lesion-seg", "--reference-seg",
               str(refs), "--use-case", str(use_case), "--output", str(out),
               "--bootstrap", "200")  # fmt: skip
    assert done.exit_code == 0, done.output
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "segmentation"
    lesion = report["segmentation"]["lesion"]
    assert lesion["n"] == 3
    assert report["excluded_by_reason"] == {
        "not a DICOM Segmentation (InvalidDicomError)": 1,
        "the referenced series is not in radpilot": 1,
    }
    model = load_model(ModelPackage.open(package), explain=False)
    expected = {}
    for folder, truth in zip(folders[:3], masks[:3], strict=True):
        datasets = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
        prediction = model.predict(datasets)
        stored = np.load(truth)
        row_of = {str(u): i for i, u in enumerate(stored["sop_instance_uids"])}
        union = stored["masks"].any(axis=0)
        reference = union[[row_of[i.sop_instance_uid] for i in prediction.images]]
        predicted = prediction.masks.get("lesion", np.zeros_like(reference))
        expected[str(datasets[0].StudyInstanceUID)] = dice(predicted, reference)
    got = {row["case_id"]: row["dice"] for row in lesion["cases"]}
    assert got == pytest.approx(expected, abs=1e-6)  # MONAI computes in float32
    assert lesion["mean"]["dice"]["value"] == pytest.approx(np.mean(list(expected.values())))
    assert 0.0 < lesion["mean"]["dice"]["value"] < 0.99  # a threshold is no lesion model
    assert report["verdict"]["verdict"] == "fail"
    assert report["verdict"]["criteria"][0]["outcome"] == "not met"
    html = (out / "report.html").read_text()
    assert "mean Dice" in html and "<svg" in html
    assert not any(uid in html for uid in expected)  # no study UIDs on the page
    text = " ".join(page.extract_text() for page in PdfReader(out / "report.pdf").pages)
    assert "Overlap and boundary distance" in text
    refused = run("--data-dir", str(data), "validate", "--model", "lesion-seg",
                  "--output", str(out))  # fmt: skip
    assert refused.exit_code == 2 and "--reference-seg" in refused.output
