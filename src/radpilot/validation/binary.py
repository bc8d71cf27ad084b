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
from radpilot.validation.stats import delong_auc, roc_points, wilson

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


class _Pending:
    """Bootstrap intervals asked for anywhere in a report, drawn in one pass over the
    same patient resamples and written into their places by :meth:`resolve`."""

    def __init__(self, cases: CaseTable, options: Options) -> None:
        self.cases, self.options = cases, options
        self.statistics: dict[str, tuple[float, Callable[[bs.Weights], Floats] | bs.Linear]] = {}
        self.slots: list[tuple[dict[str, Any], str, str]] = []

    def add(
        self, target: dict[str, Any], field: str, value: float,
        statistic: Callable[[bs.Weights], Floats] | bs.Linear,
    ) -> None:  # fmt: skip
        key = str(len(self.statistics))
        self.statistics[key] = (value, statistic)
        self.slots.append((target, field, key))

    def resolve(self) -> None:
        if not self.statistics:
            return
        what = "bootstrap by patient" if self.cases.clustered else "bootstrap"
        found = bs.intervals(self.statistics, self.cases.patient_index,
                             self.options.bootstrap, self.options.seed, what)  # fmt: skip
        for target, field, key in self.slots:
            target[field] = found[key].to_dict()
        self.statistics, self.slots = {}, []


def metrics_at(
    cases: CaseTable, threshold: float, options: Options, pending: _Pending | None = None
) -> dict[str, Any]:
    """Counts and metrics of calling ``score >= threshold`` positive.

    With ``pending``, bootstrap intervals are filled in when the caller resolves it.
    """
    own = pending is None
    pending = pending or _Pending(cases, options)
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
    out: dict[str, Any] = {"threshold": threshold, "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    for name, (num, den, k, n) in pairs.items():
        out[name] = wilson(k, n).to_dict()
        if cases.clustered and n:
            pending.add(out, name, k / n, bs.ratio(num & den, den))

    def f1(sums: Floats) -> Floats:
        t, f, m = sums[:, 0], sums[:, 1], sums[:, 2]
        with np.errstate(invalid="ignore", divide="ignore"):
            result: Floats = 2 * t / (2 * t + f + m)
        return result

    hit, alarm, miss = (called & truth), (called & ~truth), (~called & truth)
    out["f1"] = None
    columns = np.stack([hit, alarm, miss], axis=1).astype(np.float64)
    pending.add(out, "f1", _f1(tp, fp, fn), bs.Linear(columns, f1))
    if options.prevalence is not None and tp + fn and tn + fp:
        out["at_prevalence"] = at_prevalence(tp, fn, tn, fp, options.prevalence).to_dict()
    if own:
        pending.resolve()
    return out


def evaluate_binary(
    cases: CaseTable, operating_points: Mapping[str, float], options: Options | None = None
) -> dict[str, Any]:
    """Everything above for one finding, JSON-ready.

    ``operating_points`` are the package's named thresholds (score >= threshold is
    positive); thresholds chosen on these cases are added under ``chosen_here``. Every
    bootstrap interval comes from one shared set of patient resamples.
    """
    options = options or Options()
    excluded = cases.exclusion_summary()
    cases = cases.take(np.argsort(cases.scores, kind="mergesort"))  # sorted once for the AUC
    pending = _Pending(cases, options)
    positives = int(cases.labels.sum())
    index = cases.patient_index
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2)
    squared = (cases.scores - cases.labels) ** 2
    auc = delong_auc(cases.scores, cases.labels)
    report: dict[str, Any] = {
        "n": len(cases),
        "patients": int(index.max()) + 1,
        "positives": positives,
        "negatives": len(cases) - positives,
        "prevalence": wilson(positives, len(cases)).to_dict(),
        "deployment_prevalence": options.prevalence,
        "clustered": cases.clustered,
        "excluded": excluded,
        "auc": None if auc is None else auc.to_dict(),
        "operating_points": {
            name: metrics_at(cases, t, options, pending) for name, t in operating_points.items()
        },
        "chosen_here": {
            name: metrics_at(cases, t, options, pending)
            for name, t in choose_thresholds(cases, options).items()
        },
        "calibration": {
            "brier": None,
            "ece": expected_calibration_error(cases.scores, cases.labels, options.calibration_bins),
            "bins": reliability(cases.scores, cases.labels, options.calibration_bins),
        },
        "net_benefit": net_benefit(cases.scores, cases.labels, grid),
    }
    if auc is not None and cases.clustered:
        scores, labels = cases.scores, cases.labels
        pending.add(report, "auc", auc.value, lambda w: bs.weighted_auc(w, scores, labels))
    ones = np.ones(len(cases))
    pending.add(report["calibration"], "brier", brier(cases.scores, cases.labels),
                bs.ratio(squared, ones))  # fmt: skip
    pending.resolve()
    return report
