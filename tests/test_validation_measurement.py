"""Validation of measurement models: agreement numbers, subgroups, verdict and the CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pypdf import PdfReader
from scipy import stats as sps
from sqlalchemy import select
from typer.testing import CliRunner

from radpilot.cli.main import _register, app
from radpilot.store import Database
from radpilot.store.models_validation import ValidationReportRecord
from radpilot.validation.cases import ValidationDataError
from radpilot.validation.measurement import evaluate_measurement, measurement_cases
from radpilot.validation.measurement_report import build_measurement_report, measurement_verdict
from radpilot.validation.usecase import UseCase
from tests import model_factory as mf


def rows_from(measured: np.ndarray, reference: np.ndarray, **columns: Any) -> list[dict[str, Any]]:
    rows = []
    for i, (m, r) in enumerate(zip(measured, reference, strict=True)):
        row = {"case_id": f"c{i}", "measured": f"{m:.6f}", "reference": f"{r:.6f}"}
        row.update({k: v[i] for k, v in columns.items()})
        rows.append(row)
    return rows


def simulated(n: int = 300, bias: float = 2.0, sd: float = 1.0, slope: float = 0.0, seed: int = 1):
    rng = np.random.default_rng(seed)
    reference = rng.uniform(10, 50, n)
    measured = reference + bias + slope * (reference - 30) + rng.normal(0, sd, n)
    return measured, reference


def test_agreement_numbers_match_their_definitions() -> None:
    measured, reference = simulated()
    cases = measurement_cases(rows_from(measured, reference))
    result = evaluate_measurement(cases, bootstrap=500, seed=3)
    d = cases.measured - cases.reference  # the values as parsed from the rows
    ba = result["bland_altman"]
    assert ba["bias"]["value"] == pytest.approx(d.mean())
    assert ba["upper_limit"]["value"] == pytest.approx(d.mean() + 1.959964 * d.std(ddof=1))
    assert ba["bias"]["low"] < 2.0 < ba["bias"]["high"]  # the simulated bias is inside
    assert result["mae"]["value"] == pytest.approx(np.abs(d).mean())
    assert result["rmse"]["value"] == pytest.approx(np.sqrt((d**2).mean()))
    assert result["mae"]["low"] < result["mae"]["value"] < result["mae"]["high"]
    # ICC of a strongly related pair over a wide range is high but below 1 (the bias)
    assert 0.9 < result["icc"]["value"] < 1.0
    fit = sps.linregress((measured + reference) / 2, measured - reference)
    assert result["proportional_bias"]["value"] == pytest.approx(fit.slope, rel=1e-4, abs=1e-6)
    assert result["proportional_bias"]["low"] < 0 < result["proportional_bias"]["high"]


def test_proportional_bias_is_found_when_the_error_grows_with_the_value() -> None:
    measured, reference = simulated(slope=0.15, sd=0.5)
    result = evaluate_measurement(measurement_cases(rows_from(measured, reference)), bootstrap=200)
    slope = result["proportional_bias"]
    assert slope["low"] > 0  # differences grow with the mean
    report = build_measurement_report(
        measurement_cases(rows_from(measured, reference)), model={}, source="t", bootstrap=200
    )
    assert any(line.startswith("Proportional bias") for line in report["summary"])


def test_patient_bootstrap_counts_a_patient_once() -> None:
    """Five studies of each patient with identical differences carry the information of
    one study per patient: the patient bootstrap keeps the interval as wide as that; a
    study-level bootstrap (distinct patient ids) would make it about sqrt(5) narrower."""
    measured, reference = simulated(n=60, seed=4)
    m, r = np.repeat(measured, 5), np.repeat(reference, 5)
    patients = [f"p{i // 5}" for i in range(len(m))]
    clustered = evaluate_measurement(
        measurement_cases(rows_from(m, r, patient_id=patients)), bootstrap=1000, seed=0
    )
    naive = evaluate_measurement(measurement_cases(rows_from(m, r)), bootstrap=1000, seed=0)
    one_each = evaluate_measurement(
        measurement_cases(rows_from(measured, reference)), bootstrap=1000, seed=0
    )

    def width(result: dict[str, Any]) -> float:
        return float(result["mae"]["high"] - result["mae"]["low"])

    assert clustered["patients"] == 60
    assert width(clustered) == pytest.approx(width(one_each), rel=0.25)
    assert width(naive) < 0.7 * width(clustered)


def test_a_subgroup_with_its_own_bias_is_flagged_and_small_groups_are_not_judged() -> None:
    rng = np.random.default_rng(7)
    reference = rng.uniform(10, 50, 240)
    site = np.array(["A"] * 100 + ["B"] * 100 + ["C"] * 37 + ["D"] * 3)
    noise = rng.normal(0, 1.0, 240)

    def groups_for(extra_b: float) -> dict[str, Any]:
        measured = reference + 0.2 + np.where(site == "B", extra_b, 0.0) + noise
        cases = measurement_cases(rows_from(measured, reference, site=list(site)))
        analysis = evaluate_measurement(cases, tolerance=1.0, bootstrap=200)["subgroups"]
        return dict(analysis["attributes"]["site"]["groups"], comparisons=analysis["comparisons"])

    assert not any(g["differs"] for k, g in groups_for(0.0).items() if k != "comparisons")
    by_site = groups_for(1.5)
    assert by_site.pop("comparisons") == 4
    assert by_site["B"]["differs"]
    assert min(by_site, key=lambda k: by_site[k]["p_holm"]) == "B"
    assert by_site["B"]["bias"]["low"] > 1.0
    assert not by_site["D"]["judgeable"]  # 3 cases: interval far wider than the tolerance
    assert by_site["A"]["judgeable"]
    assert all(g["p_holm"] >= g["p"] for g in by_site.values())


def test_unusable_rows_are_excluded_with_reasons_and_bad_files_refused() -> None:
    rows = rows_from(*simulated(n=10))
    rows += [
        {"case_id": "c0", "measured": "1", "reference": "1"},
        {"case_id": "x1", "measured": "n/a", "reference": "3"},
        {"case_id": "x2", "measured": "3", "reference": ""},
        {"case_id": "x3", "measured": "inf", "reference": "3"},
    ]
    cases = measurement_cases(rows)
    assert len(cases) == 10
    assert sorted(e.reason for e in cases.excluded) == [
        "duplicate case (first row kept)",
        "measured value missing or not a number",
        "measured value missing or not a number",
        "reference value missing or not a number",
    ]
    two = [dict(r, measurement="ctr" if i % 2 else "diameter") for i, r in enumerate(rows[:10])]
    with pytest.raises(ValidationDataError, match="2 measurements"):
        measurement_cases(two)
    assert len(measurement_cases(two, "ctr")) == 5
    units = [dict(r, unit="mm" if i else "cm") for i, r in enumerate(rows[:10])]
    with pytest.raises(ValidationDataError, match="different units"):
        measurement_cases(units)
    with pytest.raises(ValidationDataError, match="at least 3"):
        measurement_cases(rows[:2])


def _use_case(**success: float) -> UseCase:
    criteria = [
        {"metric": metric, ("min" if metric in {"icc", "within_tolerance"} else "max"): value}
        for metric, value in success.items()
    ]
    return UseCase.model_validate(
        {
            "name": "diameter",
            "finding": "diameter",
            "tolerance": 3.0,
            "unit": "mm",
            "success": criteria,
        }
    )


def test_verdict_follows_the_intervals() -> None:
    measured, reference = simulated(n=400, bias=0.5, sd=1.0)
    cases = measurement_cases(rows_from(measured, reference))
    result = evaluate_measurement(cases, tolerance=3.0, bootstrap=300)
    generous = measurement_verdict(
        _use_case(abs_bias=1.0, limits_of_agreement=3.5, mae=1.5, icc=0.9, within_tolerance=0.9),
        result,
    )
    assert [r["outcome"] for r in generous["criteria"]] == ["met"] * 5
    assert generous["verdict"] == "pass"
    strict = measurement_verdict(
        _use_case(abs_bias=0.2, limits_of_agreement=1.0, mae=0.5, within_tolerance=0.999), result
    )
    assert [r["outcome"] for r in strict["criteria"]] == ["not met"] * 4
    assert strict["verdict"] == "fail"
    # a bound between the estimate and its interval's far end: "not demonstrated"
    bias = result["bland_altman"]["bias"]
    bound = (bias["value"] + bias["high"]) / 2
    borderline = measurement_verdict(_use_case(abs_bias=bound), result)
    assert borderline["criteria"][0]["outcome"] == "not demonstrated"
    success = [{"metric": "auc", "min": 0.9}, {"metric": "within_tolerance", "min": 0.5}]
    mixed = UseCase.model_validate({"name": "x", "finding": "diameter", "success": success})
    rows = measurement_verdict(mixed, evaluate_measurement(cases, bootstrap=200))["criteria"]
    assert [r["outcome"] for r in rows] == ["missing", "missing"]  # no tolerance declared


def run_cli(*args: str) -> Any:
    _register()
    return CliRunner().invoke(app, list(args))


def test_cli_validates_a_registered_measurement_model(tmp_path: Path) -> None:
    data = tmp_path / "rp"
    manifest = mf.manifest_dict(
        "nodule-size", "measurement", "torchscript", "model.pt", ["ct"], [32, 32],
        output={"measurements": [{"name": "diameter", "unit": "mm"}]},
    )  # fmt: skip
    package = mf.package(tmp_path / "pkg", mf.MeasureNet(), manifest)
    assert run_cli("--data-dir", str(data), "models", "add", str(package)).exit_code == 0
    measured, reference = simulated(n=120, bias=0.4)
    sex = ["F" if i % 2 else "M" for i in range(120)]
    results = tmp_path / "results.csv"
    with results.open("w", newline="") as handle:
        rows = rows_from(measured, reference, sex=sex, unit=["mm"] * 120)
        rows.append(
            {
                "case_id": "zz-unusable-case",
                "measured": "?",
                "reference": "3",
                "sex": "F",
                "unit": "mm",
            }
        )
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    use_case = tmp_path / "usecase.yaml"
    use_case.write_text(yaml.safe_dump({
        "schema": "radpilot.usecase/1", "name": "nodule-size", "finding": "diameter",
        "tolerance": 3.0, "unit": "mm",
        "success": [{"metric": "abs_bias", "max": 1.0}, {"metric": "within_tolerance", "min": 0.9}],
    }))  # fmt: skip
    out = tmp_path / "report"
    done = run_cli("--data-dir", str(data), "validate", "--model", "nodule-size",
                   "--results", str(results), "--use-case", str(use_case), "--output", str(out),
                   "--bootstrap", "300")  # fmt: skip
    assert done.exit_code == 0, done.output
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "measurement"
    assert report["measurement"]["n"] == 120 and report["excluded"] == 1
    assert report["measurement"]["unit"] == "mm"
    assert report["verdict"]["verdict"] == "pass"
    assert "sex" in report["measurement"]["subgroups"]["attributes"]
    html = (out / "report.html").read_text()
    assert "Bland\u2013Altman" in html and "<svg" in html and "PASS" in html
    assert "zz-unusable-case" not in html and "c17" not in html  # no case ids on the page
    pdf = PdfReader(out / "report.pdf")
    text = " ".join(page.extract_text() for page in pdf.pages)
    assert report["summary"][0][:40] in " ".join(text.split())  # the page, laid out as PDF
    assert "Subgroups" in text and "Excluded (1)" in text
    assert done.output.splitlines()[0].startswith("On 120 studies")
    db = Database(f"sqlite:///{data / 'radpilot.db'}")
    try:
        with db.session() as session:
            record = session.scalars(select(ValidationReportRecord)).one()
            assert (record.cases, record.excluded, record.verdict) == (120, 1, "pass")
    finally:
        db.dispose()
    refused = run_cli("--data-dir", str(data), "validate", "--model", "nodule-size",
                      "--labels", str(results), "--output", str(out))  # fmt: skip
    assert refused.exit_code == 2
    assert "not available for measurement models" in refused.output
    assert math.isfinite(report["measurement"]["icc"]["value"])
