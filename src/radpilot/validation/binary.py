"""Validation of a binary finding's score on a table of cases, in numbers clinicians use.

For the cases given: ROC AUC (DeLong's CI), and at every operating point — the package's
own thresholds, and thresholds chosen on these cases (Youden's J, sensitivity 0.90 and
0.95, specificity 0.90 and 0.95; marked as chosen here, so optimistic) — sensitivity,
specificity, PPV, NPV and accuracy with Wilson CIs and F1 with a bootstrap CI; with a
declared deployment prevalence, PPV and NPV at that prevalence and missed positives and
false alarms per 10,000 scans (:mod:`radpilot.validation.prevalence`); calibration and
net benefit (:mod:`radpilot.validation.calibration`).

When a patient has several cases, every CI is a percentile bootstrap resampling patients
(:mod:`radpilot.validation.bootstrap`) instead, since the closed forms assume independent
cases.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from radpilot.validation import bootstrap as bs
from radpilot.validation.calibration import (
    brier,
    expected_calibration_error,
    net_benefit,
    reliability,
)
from radpilot.validation.cases import CaseTable
from radpilot.validation.prevalence import at_prevalence
from radpilot.validation.stats import Estimate, delong_auc, roc_points, wilson

__all__ = ["Options", "choose_thresholds", "evaluate_binary", "metrics_at"]

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Options:
    """How much to compute."""

    prevalence: float | None = None  # the deployment's; None: the cases' own only
    bootstrap: int = 2000
    seed: int = 0
    sensitivities: tuple[float, ...] = (0.90, 0.95)
    specificities: tuple[float, ...] = (0.90, 0.95)
    calibration_bins: int = 10


def _between(cuts: Floats, index: int) -> float:
    below = float(cuts[index + 1]) if index + 1 < len(cuts) else float(cuts[index]) - 1e-6
    return 0.5 * (float(cuts[index]) + below)


def choose_thresholds(cases: CaseTable, options: Options) -> dict[str, float]:
    """Thresholds chosen on these cases: Youden's J, and the best threshold reaching each
    target sensitivity (the highest) and specificity (the lowest)."""
    cuts, sens, spec = roc_points(cases.scores, cases.labels)
    chosen = {"youden": _between(cuts, int(np.argmax(sens + spec)))}
    for target in options.sensitivities:
        reaching = np.nonzero(sens >= target - 1e-12)[0]
        chosen[f"sensitivity {target:.2f}"] = _between(cuts, int(reaching[0]))
    for target in options.specificities:
        reaching = np.nonzero(spec >= target - 1e-12)[0]
        if len(reaching):  # calling nothing positive always reaches it; else none does
            chosen[f"specificity {target:.2f}"] = _between(cuts, int(reaching[-1]))
    return chosen


def _f1(tp: float, fp: float, fn: float) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")


def _proportion(
    numerator: npt.NDArray[np.bool_], denominator: npt.NDArray[np.bool_]
) -> Callable[[bs.Weights], Floats]:
    def statistic(weights: bs.Weights) -> Floats:
        return bs.weighted_proportion(weights, numerator, denominator)

    return statistic


def metrics_at(cases: CaseTable, threshold: float, options: Options) -> dict[str, Any]:
    """Counts and metrics of calling ``score >= threshold`` positive."""
    called, truth = cases.scores >= threshold, cases.labels == 1
    tp, fp = int(np.sum(called & truth)), int(np.sum(called & ~truth))
    fn, tn = int(np.sum(~called & truth)), int(np.sum(~called & ~truth))
    pairs = {
        "sensitivity": (called, truth, tp, tp + fn),
        "specificity": (~called, ~truth, tn, tn + fp),
        "ppv": (truth, called, tp, tp + fp),
        "npv": (~truth, ~called, tn, tn + fn),
        "accuracy": (called == truth, np.ones_like(truth), tp + tn, len(truth)),
    }
    index, reps, seed = cases.patient_index, options.bootstrap, options.seed
    out: dict[str, Any] = {"threshold": threshold, "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    for name, (num, den, k, n) in pairs.items():
        if cases.clustered and n:
            est = bs.interval(k / n, _proportion(num, den), index, reps, seed)
        else:
            est = wilson(k, n)
        out[name] = est.to_dict()

    def f1(w: bs.Weights) -> Floats:
        t, f, m = (w @ (called & truth)), (w @ (called & ~truth)), (w @ (~called & truth))
        with np.errstate(invalid="ignore", divide="ignore"):
            result: Floats = 2 * t / (2 * t + f + m)
        return result

    method = "bootstrap by patient" if cases.clustered else "bootstrap"
    out["f1"] = bs.interval(_f1(tp, fp, fn), f1, index, reps, seed, method).to_dict()
    if options.prevalence is not None and tp + fn and tn + fp:
        out["at_prevalence"] = at_prevalence(tp, fn, tn, fp, options.prevalence).to_dict()
    return out


def _auc(cases: CaseTable, options: Options) -> Estimate | None:
    auc = delong_auc(cases.scores, cases.labels)
    if auc is None or not cases.clustered:
        return auc
    return bs.interval(
        auc.value,
        lambda w: bs.weighted_auc(w, cases.scores, cases.labels),
        cases.patient_index,
        options.bootstrap,
        options.seed,
    )


def evaluate_binary(
    cases: CaseTable, operating_points: Mapping[str, float], options: Options | None = None
) -> dict[str, Any]:
    """Everything above for one finding, JSON-ready.

    ``operating_points`` are the package's named thresholds (score >= threshold is
    positive); thresholds chosen on these cases are added under ``chosen_here``.
    """
    options = options or Options()
    positives = int(cases.labels.sum())
    auc = _auc(cases, options)
    index = cases.patient_index
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2)
    squared = (cases.scores - cases.labels) ** 2
    brier_ci = bs.interval(
        brier(cases.scores, cases.labels),
        lambda w: (w @ squared) / w.sum(axis=1),
        index,
        options.bootstrap,
        options.seed,
        "bootstrap by patient" if cases.clustered else "bootstrap",
    )
    return {
        "n": len(cases),
        "patients": int(index.max()) + 1,
        "positives": positives,
        "negatives": len(cases) - positives,
        "prevalence": wilson(positives, len(cases)).to_dict(),
        "deployment_prevalence": options.prevalence,
        "clustered": cases.clustered,
        "excluded": cases.exclusion_summary(),
        "auc": None if auc is None else auc.to_dict(),
        "operating_points": {
            name: metrics_at(cases, t, options) for name, t in operating_points.items()
        },
        "chosen_here": {
            name: metrics_at(cases, t, options)
            for name, t in choose_thresholds(cases, options).items()
        },
        "calibration": {
            "brier": brier_ci.to_dict(),
            "ece": expected_calibration_error(cases.scores, cases.labels, options.calibration_bins),
            "bins": reliability(cases.scores, cases.labels, options.calibration_bins),
        },
        "net_benefit": net_benefit(cases.scores, cases.labels, grid),
    }
