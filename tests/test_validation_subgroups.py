"""Subgroups from a real run: the reference model on the 624 official test radiographs as
DICOM studies with varied headers (``radpilot synth``: manufacturers, sites, sex, ages
including children), one study in three with strong noise added. The headers are drawn
independently of the images, the noise is not: the analysis must find the noisy group
and no header group."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from radpilot.data.synth import RadiographOptions, pneumoniamnist_cases, radiograph_study
from radpilot.data.synth_common import Variation
from radpilot.data.synth_perturb import PerturbationSpec
from radpilot.models.inference import load_model
from radpilot.models.package import ModelPackage
from radpilot.validation.cases import CaseTable, build_cases
from radpilot.validation.subgroups import (
    SubgroupOptions,
    _z_test,
    age_band,
    analyse_subgroups,
    holm,
    newcombe_difference,
)
from tests.reference_helpers import NPZ, PACKAGE, pneumonia_scores

THRESHOLD = 0.513088  # the package's default (Youden) operating point


@pytest.fixture(scope="module")
def cases() -> CaseTable:
    if not NPZ.exists():
        pytest.skip(f"PneumoniaMNIST not found at {NPZ}")
    model = load_model(ModelPackage.open(PACKAGE), explain=False, threads=2)
    noise = (PerturbationSpec.parse("noise=400"),)
    rows, studies = [], []
    for i, case in enumerate(pneumoniamnist_cases(NPZ, "test")):
        noisy = i % 3 == 0
        variation = Variation(vary_headers=True, perturbations=noise if noisy else ())
        study = radiograph_study(case, options=RadiographOptions(size=256), variation=variation)
        ds = study.datasets[0]
        studies.append(ds)
        rows.append({
            "case_id": study.study_instance_uid, "patient_id": str(ds.PatientID),
            "label": case.label, "manufacturer": str(ds.Manufacturer),
            "site": str(ds.InstitutionName), "sex": str(ds.PatientSex),
            "age band": age_band(str(ds.PatientAge)), "noise": "yes" if noisy else "no",
        })  # fmt: skip
    scores, _ = pneumonia_scores(model, studies)
    for row, score in zip(rows, scores, strict=True):
        row["score"] = float(score)
    return build_cases(rows)


def test_finds_the_degraded_group_and_no_header_group(cases: CaseTable) -> None:
    analysis = analyse_subgroups(cases, THRESHOLD)
    attributes = analysis["attributes"]
    assert set(attributes) == {"age band", "manufacturer", "site", "sex", "noise"}
    noisy = attributes["noise"]["groups"]["yes"]
    clean = attributes["noise"]["groups"]["no"]
    assert noisy["n"] == 208 and clean["n"] == 416
    assert noisy["sensitivity"]["differs"] and noisy["sensitivity"]["value"] < 0.9
    assert noisy["sensitivity"]["difference_from_rest"]["high"] < 0
    assert attributes["noise"]["equity"]["sensitivity"]["lowest"] == "yes"
    for name in ("age band", "manufacturer", "site", "sex"):
        for group, values in attributes[name]["groups"].items():
            for metric in ("sensitivity", "specificity"):
                assert not values[metric]["differs"], (name, group, metric)
    paediatric = {"0-1 (infant)", "2-11 (child)", "12-17 (adolescent)"}
    assert paediatric <= set(attributes["age band"]["groups"])
    assert analysis["comparisons"] == 2 * sum(len(a["groups"]) for a in attributes.values())


def test_group_counts_and_intervals_match_the_cases(cases: CaseTable) -> None:
    analysis = analyse_subgroups(cases, THRESHOLD, SubgroupOptions(attributes=("site",)))
    called = cases.scores >= THRESHOLD
    sites = np.asarray(cases.attributes["site"])
    pvalues, ours = [], []
    for site, group in analysis["attributes"]["site"]["groups"].items():
        member = sites == site
        pos = member & (cases.labels == 1)
        assert group["positives"] == int(pos.sum())
        assert group["sensitivity"]["value"] == pytest.approx(called[pos].mean())
        rest = ~member & (cases.labels == 1)
        table = [[int(called[pos].sum()), int((~called[pos]).sum())],
                 [int(called[rest].sum()), int((~called[rest]).sum())]]  # fmt: skip
        # the pooled two-proportion z-test is Pearson's chi-square without correction
        expected = chi2_contingency(table, correction=False).pvalue
        assert group["sensitivity"]["p"] == pytest.approx(expected, rel=1e-6)
        for metric in ("sensitivity", "specificity"):
            pvalues.append(group[metric]["p"])
            ours.append(group[metric]["p_holm"])
    m = len(pvalues)
    order = np.argsort(pvalues)
    holm = np.maximum.accumulate(np.minimum(1, (m - np.arange(m)) * np.asarray(pvalues)[order]))
    assert np.asarray(ours)[order] == pytest.approx(holm)
    assert analysis["skipped"] == {}


def test_too_few_cases_are_not_judged_and_identifiers_are_not_groups() -> None:
    rows = [{"case_id": str(i), "score": (i % 10) / 10, "label": i % 2,
             "site": "big" if i < 200 else "tiny", "accession": f"A{i}"}
            for i in range(206)]  # fmt: skip
    analysis = analyse_subgroups(build_cases(rows), 0.5)
    tiny = analysis["attributes"]["site"]["groups"]["tiny"]
    assert tiny["n"] == 6
    assert not tiny["sensitivity"]["judgeable"] and not tiny["specificity"]["judgeable"]
    assert analysis["attributes"]["site"]["equity"]["sensitivity"] is None
    assert analysis["skipped"] == {"accession": "206 distinct value(s)"}


def test_age_bands_read_dicom_age_strings() -> None:
    assert [age_band(v) for v in ("006M", "001Y", "002Y", "011Y", "012Y", "017Y")] == [
        "0-1 (infant)", "0-1 (infant)", "2-11 (child)", "2-11 (child)",
        "12-17 (adolescent)", "12-17 (adolescent)",
    ]  # fmt: skip
    assert [age_band(v) for v in ("018Y", "064Y", "065Y", "080Y", "45", "", "0XXY")] == [
        "18-39", "40-64", "65-79", "80+", "40-64", "", "",
    ]  # fmt: skip
    assert age_band("010D") == "0-1 (infant)" and age_band("030W") == "0-1 (infant)"


def test_newcombe_interval_covers_the_difference() -> None:
    rng = np.random.default_rng(5)
    p1, p2, n1, n2 = 0.85, 0.75, 90, 140
    hits = 0
    for k1, k2 in zip(rng.binomial(n1, p1, 3000), rng.binomial(n2, p2, 3000), strict=True):
        est = newcombe_difference(int(k1), n1, int(k2), n2)
        hits += est.low <= p1 - p2 <= est.high
    assert 0.93 <= hits / 3000 <= 0.97
    assert math.isnan(newcombe_difference(1, 0, 1, 2).value)
    assert _z_test(3, 3, 5, 5) == 1.0  # no variance: nothing to test
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_clustered_cases_get_patient_bootstrap_intervals() -> None:
    """Two studies per patient with the same read: the group intervals resample patients
    and are wider than the Wilson interval that counts every study as independent."""
    rng = np.random.default_rng(9)
    rows = []
    for patient in range(150):
        label, hit = int(rng.random() < 0.5), rng.random() < 0.8
        for study in range(2):
            score = 0.9 if hit == bool(label) else 0.1
            site = "a" if patient % 2 else "b"
            rows.append({"case_id": f"{patient}-{study}", "patient_id": f"p{patient}",
                         "score": score, "label": label, "site": site})  # fmt: skip
    cases = build_cases(rows)
    clustered = analyse_subgroups(cases, 0.5, SubgroupOptions(bootstrap=500))
    flat = analyse_subgroups(build_cases([{**r, "patient_id": ""} for r in rows]), 0.5)
    for site in ("a", "b"):
        c = clustered["attributes"]["site"]["groups"][site]["sensitivity"]
        w = flat["attributes"]["site"]["groups"][site]["sensitivity"]
        assert c["method"].startswith("bootstrap by patient") and w["method"] == "Wilson"
        assert c["value"] == w["value"]
        assert c["high"] - c["low"] > w["high"] - w["low"]


def test_clustered_difference_from_the_rest_is_tested_by_patient() -> None:
    """Five identical studies per patient carry one study's evidence. Counted as
    independent, a modest site difference looks highly significant; the patient-bootstrap
    test gives about the p-value of one study per patient, and a wider difference CI."""
    rng = np.random.default_rng(11)
    patients = []
    for patient in range(160):
        site = "a" if patient < 80 else "b"
        label = int(rng.random() < 0.5)
        hit = rng.random() < (0.9 if site == "a" else 0.75)
        patients.append((patient, site, label, 0.9 if hit == bool(label) else 0.1))

    def table(per_patient: int, with_ids: bool) -> CaseTable:
        rows = [
            {"case_id": f"{p}-{k}", "patient_id": f"p{p}" if with_ids else "",
             "score": score, "label": label, "site": site}
            for p, site, label, score in patients for k in range(per_patient)
        ]  # fmt: skip
        return build_cases(rows)

    options = SubgroupOptions(bootstrap=2000)

    def site_a(per_patient: int, with_ids: bool) -> dict[str, Any]:
        analysis = analyse_subgroups(table(per_patient, with_ids), 0.5, options)
        return analysis["attributes"]["site"]["groups"]["a"]["sensitivity"]

    one, naive, clustered = site_a(1, False), site_a(5, False), site_a(5, True)
    assert clustered["test"].startswith("Wald, patient-bootstrap")
    assert naive["test"] == "two-proportion z-test"
    assert naive["p"] < one["p"] / 5  # five copies: spuriously strong evidence
    assert clustered["p"] == pytest.approx(one["p"], abs=0.05 + 0.5 * one["p"])
    assert clustered["difference_from_rest"]["value"] == pytest.approx(
        one["difference_from_rest"]["value"]
    )

    def width(entry: dict[str, Any]) -> float:
        return float(entry["difference_from_rest"]["high"] - entry["difference_from_rest"]["low"])

    assert width(clustered) > 1.8 * width(naive)
