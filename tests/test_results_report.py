"""Draft report snippets: plain text and FHIR R4 DiagnosticReport JSON."""

from __future__ import annotations

import base64
import datetime
import json
import re
from typing import Any

import numpy as np

from radpilot.models.prediction import Finding, Measurement, Prediction
from radpilot.results.report import StudyInfo, fhir_report, report_text
from tests.results_helpers import WEIGHTS_SHA256, make_ctx, pydicom_file, ref_of

_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _study() -> StudyInfo:
    ct = pydicom_file("CT_small.dcm", stop_before_pixels=True)
    return StudyInfo(
        study_instance_uid=str(ct.StudyInstanceUID),
        accession_number="ACC-0042",
        patient_id="PSEUDO-7f3a",
        study_date=str(ct.StudyDate),
        modality=str(ct.Modality),
    )


def _prediction() -> Prediction:
    ct = pydicom_file("CT_small.dcm", stop_before_pixels=True)
    return Prediction(
        task="classification",
        findings=[
            Finding("pneumonia", 0.8731, 0.31, "high-sensitivity", positive=True, critical=True),
            Finding("pleural_effusion", 0.12, 0.42, "high-sensitivity", positive=False),
            Finding("uncalibrated", 0.5),
        ],
        images=[ref_of(ct)],
        measurements=[Measurement("diameter", 12.5, "mm")],
        masks={"lesion": np.ones((1, 2, 2), dtype=bool)},
    )


def test_text_states_findings_model_and_that_it_is_preliminary() -> None:
    text = report_text(_prediction(), make_ctx(), _study())
    assert "chest-xr 1.2.0" in text
    assert WEIGHTS_SHA256[:12] in text
    assert "preliminary ai result, to be confirmed by a radiologist" in text.lower()
    assert "pneumonia: CRITICAL, POSITIVE (score 0.87" in text
    assert 'operating point "high-sensitivity", threshold 0.31' in text
    assert "pleural_effusion: negative (score 0.12" in text
    assert "uncalibrated: score 0.50 (no operating point applied)" in text
    assert "diameter: 12.5 mm" in text
    assert "accession ACC-0042" in text and "2004-01-19" in text
    assert "PSEUDO-7f3a" not in text  # the patient is not named in the text


def _contained(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {resource["id"]: resource for resource in report.get("contained", [])}


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for value in node.values() for r in _references(value)]
    if isinstance(node, list):
        return [r for value in node for r in _references(value)]
    return []


def test_fhir_report_has_the_required_r4_shape() -> None:
    ctx, study, prediction = make_ctx(), _study(), _prediction()
    report = fhir_report(prediction, ctx, study)
    assert json.loads(json.dumps(report)) == report
    assert report["resourceType"] == "DiagnosticReport"
    assert report["status"] == "preliminary"
    assert _FHIR_ID.match(report["id"])
    assert report["code"]["coding"][0]["system"] == "http://loinc.org"
    assert report["subject"]["identifier"]["value"] == "PSEUDO-7f3a"
    assert report["imagingStudy"][0]["identifier"] == {
        "system": "urn:dicom:uid",
        "value": f"urn:oid:{study.study_instance_uid}",
    }
    assert _INSTANT.match(report["issued"])
    assert report["effectiveDateTime"] == "2004-01-19"
    accession = [i for i in report["identifier"] if i.get("type")]
    assert accession[0]["value"] == "ACC-0042"
    text = base64.b64decode(report["presentedForm"][0]["data"]).decode("utf-8")
    assert text == report_text(prediction, ctx, study)

    contained = _contained(report)
    # dom-3: every contained resource is referenced from the report or another contained one
    referenced = {r.removeprefix("#") for r in _references(report) if r.startswith("#")}
    assert referenced == set(contained)
    observations = [contained[r["reference"].removeprefix("#")] for r in report["result"]]
    assert len(observations) == 4  # three findings and one measurement
    for observation in observations:
        assert observation["resourceType"] == "Observation"
        assert observation["status"] == "preliminary"
        assert observation["code"]["coding"] and observation["code"]["text"]
        assert observation["subject"] == report["subject"]
        assert isinstance(observation["valueQuantity"]["value"], float)


def test_fhir_observations_carry_scores_interpretation_and_model() -> None:
    report = fhir_report(_prediction(), make_ctx(), _study())
    contained = _contained(report)
    by_text = {
        o["code"]["text"]: o for o in contained.values() if o["resourceType"] == "Observation"
    }
    pneumonia = by_text["pneumonia"]
    assert pneumonia["valueQuantity"]["value"] == 0.8731
    assert pneumonia["code"]["coding"][0] == {
        "system": "http://snomed.info/sct",
        "code": "233604007",
        "display": "Pneumonia",
    }
    assert pneumonia["interpretation"][0]["coding"][0]["code"] == "POS"
    components = {c["code"]["text"]: c for c in pneumonia["component"]}
    assert components["operating point threshold"]["valueQuantity"]["value"] == 0.31
    assert components["operating point"]["valueString"] == "high-sensitivity"
    assert by_text["pleural_effusion"]["interpretation"][0]["coding"][0]["code"] == "NEG"
    assert "interpretation" not in by_text["uncalibrated"]
    assert by_text["diameter"]["valueQuantity"]["code"] == "mm"
    device = contained[pneumonia["device"]["reference"].removeprefix("#")]
    assert device["resourceType"] == "Device"
    versions = {v["type"]["text"]: v["value"] for v in device["version"]}
    assert versions == {"model version": "1.2.0", "weights sha256": WEIGHTS_SHA256}


def test_fhir_report_without_findings_is_still_a_valid_report() -> None:
    report = fhir_report(Prediction(task="enhancement"), make_ctx(), _study())
    assert report["status"] == "preliminary"
    assert "contained" not in report and "result" not in report
    assert "chest-xr 1.2.0" in report["conclusion"]
    assert json.loads(json.dumps(report)) == report


def test_fhir_report_id_is_deterministic() -> None:
    study = _study()
    first = fhir_report(_prediction(), make_ctx(), study)
    assert fhir_report(_prediction(), make_ctx(), study)["id"] == first["id"]
    assert fhir_report(_prediction(), make_ctx("other"), study)["id"] != first["id"]
    bad_date = StudyInfo(study.study_instance_uid, None, "p", "2004-1-9", None)
    report = fhir_report(_prediction(), make_ctx(), bad_date)
    assert "effectiveDateTime" not in report
    assert datetime.datetime.fromisoformat(report["issued"]).tzinfo is not None
