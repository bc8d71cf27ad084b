"""Every validation metric against an independent implementation (scikit-learn, SciPy or a
direct formula), on real predictions: the committed reference model on the official
PneumoniaMNIST test split (624 radiographs), through radpilot's runtime on DICOM."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from radpilot.validation import bootstrap as bs
from radpilot.validation.binary import Options, evaluate_binary
from radpilot.validation.cases import CaseTable
from radpilot.validation.prevalence import at_prevalence
from radpilot.validation.stats import delong_auc, wilson
from tests.reference_helpers import NPZ, reference_test_scores

pytestmark = pytest.mark.skipif(not NPZ.exists(), reason=f"PneumoniaMNIST not found at {NPZ}")


@pytest.fixture(scope="module")
def real() -> tuple[np.ndarray, np.ndarray]:
    return reference_test_scores()


@pytest.fixture(scope="module")
def report(real: tuple[np.ndarray, np.ndarray]) -> dict[str, object]:
    scores, labels = real
    cases = CaseTable([str(i) for i in range(len(labels))], [str(i) for i in range(len(labels))],
                      scores, labels)  # fmt: skip
    return evaluate_binary(cases, {"youden": 0.513088}, Options(prevalence=0.05, bootstrap=500))


def delong_variance_direct(scores: np.ndarray, labels: np.ndarray) -> float:
    """DeLong, DeLong and Clarke-Pearson (1988), structural components, O(m n)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return float(np.var(v10, ddof=1) / len(pos) + np.var(v01, ddof=1) / len(neg))


def test_auc_and_its_delong_interval(real: tuple[np.ndarray, np.ndarray]) -> None:
    scores, labels = real
    auc = delong_auc(scores, labels)
    assert auc is not None
    assert auc.value == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    half = 1.959963984540054 * math.sqrt(delong_variance_direct(scores, labels))
    assert auc.low == pytest.approx(auc.value - half, abs=1e-9)
    assert auc.high == pytest.approx(min(1.0, auc.value + half), abs=1e-9)


def test_metrics_at_each_operating_point(
    real: tuple[np.ndarray, np.ndarray], report: dict[str, object]
) -> None:
    scores, labels = real
    package, here = report["operating_points"], report["chosen_here"]
    assert set(package) == {"youden"}  # type: ignore[arg-type]
    assert set(here) == {"youden", "sensitivity 0.90", "sensitivity 0.95",  # type: ignore[arg-type]
                         "specificity 0.90", "specificity 0.95"}  # fmt: skip
    points = [(f"package {n}", p) for n, p in package.items()]  # type: ignore[attr-defined]
    points += [(f"chosen here: {n}", p) for n, p in here.items()]  # type: ignore[attr-defined]
    for name, point in points:
        called = (scores >= point["threshold"]).astype(int)
        tn, fp, fn, tp = confusion_matrix(labels, called, labels=[0, 1]).ravel()
        assert (point["tp"], point["fp"], point["fn"], point["tn"]) == (tp, fp, fn, tn), name
        expected = {
            "sensitivity": recall_score(labels, called),
            "specificity": recall_score(labels, called, pos_label=0),
            "ppv": precision_score(labels, called, zero_division=np.nan),
            "npv": precision_score(labels, called, pos_label=0, zero_division=np.nan),
            "accuracy": accuracy_score(labels, called),
            "f1": f1_score(labels, called),
        }
        for metric, value in expected.items():
            assert point[metric]["value"] == pytest.approx(value, abs=1e-12), (name, metric)
        for metric, (k, n) in {"sensitivity": (tp, tp + fn), "specificity": (tn, tn + fp),
                               "accuracy": (tp + tn, len(labels))}.items():  # fmt: skip
            ci = binomtest(int(k), int(n)).proportion_ci(method="wilson")
            assert point[metric]["low"] == pytest.approx(ci.low, abs=1e-9), (name, metric)
            assert point[metric]["high"] == pytest.approx(ci.high, abs=1e-9), (name, metric)
        assert point["f1"]["low"] <= point["f1"]["value"] <= point["f1"]["high"]


def test_thresholds_chosen_here_are_the_roc_curves_best(
    real: tuple[np.ndarray, np.ndarray], report: dict[str, object]
) -> None:
    scores, labels = real
    fpr, tpr, _ = roc_curve(labels, scores)
    chosen = report["chosen_here"]
    youden = chosen["youden"]  # type: ignore[index]
    best_j = float(np.max(tpr - fpr))
    assert youden["sensitivity"]["value"] + youden["specificity"]["value"] - 1 == pytest.approx(
        best_j, abs=1e-12
    )
    for target in (0.90, 0.95):
        point = chosen[f"sensitivity {target:.2f}"]  # type: ignore[index]
        assert point["sensitivity"]["value"] >= target
        assert point["specificity"]["value"] == pytest.approx(1 - np.min(fpr[tpr >= target]))
        point = chosen[f"specificity {target:.2f}"]  # type: ignore[index]
        assert point["specificity"]["value"] >= target
        assert point["sensitivity"]["value"] == pytest.approx(np.max(tpr[1 - fpr >= target]))


def test_calibration_and_net_benefit(
    real: tuple[np.ndarray, np.ndarray], report: dict[str, object]
) -> None:
    scores, labels = real
    calibration = report["calibration"]
    assert calibration["brier"]["value"] == pytest.approx(brier_score_loss(labels, scores))  # type: ignore[index]
    observed, predicted = calibration_curve(labels, scores, n_bins=10, strategy="uniform")
    bins = calibration["bins"]  # type: ignore[index]
    assert [b["observed"]["value"] for b in bins] == pytest.approx(list(observed))
    assert [b["mean_score"] for b in bins] == pytest.approx(list(predicted))
    weights = np.asarray([b["n"] for b in bins]) / len(labels)
    ece = float(np.sum(weights * np.abs(observed - predicted)))
    assert calibration["ece"] == pytest.approx(ece)  # type: ignore[index]
    for row in report["net_benefit"][::10]:  # type: ignore[index]
        t = row["threshold"]
        _, fp, _, tp = confusion_matrix(labels, (scores >= t).astype(int)).ravel()
        n = len(labels)
        assert row["model"] == pytest.approx(tp / n - fp / n * t / (1 - t))
        assert row["treat_all"] == pytest.approx(labels.mean() - (1 - labels.mean()) * t / (1 - t))


def test_predictive_values_at_prevalence(
    real: tuple[np.ndarray, np.ndarray], report: dict[str, object]
) -> None:
    scores, labels = real
    called = (scores >= 0.513088).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(labels, called).ravel())
    # at the cases' own prevalence, the PPV and NPV are the measured ones
    own = at_prevalence(tp, fn, tn, fp, float(labels.mean()))
    assert own.ppv.value == pytest.approx(precision_score(labels, called))
    assert own.npv.value == pytest.approx(precision_score(labels, called, pos_label=0))
    at5 = report["operating_points"]["youden"]["at_prevalence"]  # type: ignore[index]
    se, sp = tp / (tp + fn), tn / (tn + fp)
    assert at5["ppv"]["value"] == pytest.approx(se * 0.05 / (se * 0.05 + (1 - sp) * 0.95))
    assert at5["missed_per_10000"]["value"] == pytest.approx(10_000 * 0.05 * (1 - se))
    sens = wilson(tp, tp + fn)
    assert at5["missed_per_10000"]["low"] == pytest.approx(500 * (1 - sens.high))
    assert at5["false_alarms_per_10000"]["value"] == pytest.approx(9_500 * (1 - sp))
    assert at5["ppv"]["low"] < at5["ppv"]["value"] < at5["ppv"]["high"]


def test_weighted_bootstrap_statistics_are_the_weighted_metrics(
    real: tuple[np.ndarray, np.ndarray],
) -> None:
    """A replicate's weights are case counts: its AUC and proportions must equal
    scikit-learn's with those counts as sample weights."""
    scores, labels = real
    index = np.arange(len(labels))
    (weights,) = list(bs.replicate_weights(index, 5, seed=3, chunk=5))[:1]
    aucs = bs.weighted_auc(weights, scores, labels)
    ratio = bs.ratio((scores >= 0.5) & (labels == 1), labels == 1)
    sens = ratio.combine(weights @ ratio.columns)
    for w, auc, s in zip(weights, aucs, sens, strict=True):
        assert auc == pytest.approx(roc_auc_score(labels, scores, sample_weight=w), abs=1e-12)
        assert s == pytest.approx(recall_score(labels, scores >= 0.5, sample_weight=w))
    assert bs.weighted_auc(np.ones((1, len(labels))), scores, labels)[0] == pytest.approx(
        roc_auc_score(labels, scores), abs=1e-12
    )
