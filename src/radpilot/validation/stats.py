"""Metrics with 95% confidence intervals, and operating points (training and validation).

- ROC AUC with DeLong's CI (the fast mid-rank form of Sun and Xu, 2014): exact for the
  AUC's variance under the usual assumptions, no resampling.
- Proportions (accuracy, sensitivity, specificity) with Wilson score intervals, which
  behave at 0 and 1 and for small counts where the normal approximation does not.
- Means of per-image values (Dice, detection recall) with a percentile bootstrap over
  images, seeded.
- Operating points chosen on validation: Youden's J (sensitivity + specificity - 1 at
  its maximum) and the highest threshold that reaches a target sensitivity. A threshold
  is placed half-way between two observed scores, never on one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "Estimate",
    "OperatingPointResult",
    "bootstrap_mean",
    "delong",
    "delong_auc",
    "operating_points",
    "roc_points",
    "wilson",
]

Z95 = 1.959963984540054
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Estimate:
    """A value with its 95% CI, how it was computed, and on how many cases."""

    value: float
    low: float
    high: float
    method: str
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.3f} (95% CI {self.low:.3f}-{self.high:.3f}, n={self.n})"


def wilson(successes: int, trials: int) -> Estimate:
    """A proportion with its Wilson score 95% interval (``nan`` for no trials)."""
    if trials == 0:
        return Estimate(math.nan, math.nan, math.nan, "Wilson", 0)
    p = successes / trials
    denominator = 1 + Z95**2 / trials
    centre = (p + Z95**2 / (2 * trials)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / trials + Z95**2 / (4 * trials**2)) / denominator
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), "Wilson", trials)


def _midrank(values: Floats) -> Floats:
    """1-based ranks, ties given the mean of the ranks they span."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks: Floats = ((ends - counts + 1 + ends) / 2.0)[inverse]
    return ranks


def delong(scores: Floats, truth: npt.NDArray[np.int64]) -> tuple[float, float, int] | None:
    """ROC AUC, its DeLong variance and the number of cases; None when a class is absent."""
    positive, negative = scores[truth == 1], scores[truth == 0]
    m, n = len(positive), len(negative)
    if m == 0 or n == 0:
        return None
    tx, ty = _midrank(positive), _midrank(negative)
    tz = _midrank(np.concatenate([positive, negative]))
    auc = float(tz[:m].sum() / (m * n) - (m + 1.0) / (2.0 * n))
    v10 = (tz[:m] - tx) / n
    v01 = 1.0 - (tz[m:] - ty) / m
    var = (np.var(v10, ddof=1) / m if m > 1 else 0.0) + (np.var(v01, ddof=1) / n if n > 1 else 0.0)
    return auc, max(float(var), 0.0), m + n


def delong_auc(scores: Floats, truth: npt.NDArray[np.int64]) -> Estimate | None:
    """ROC AUC and its DeLong 95% CI (clipped to [0, 1]); None when a class is absent."""
    found = delong(scores, truth)
    if found is None:
        return None
    auc, var, n = found
    se = math.sqrt(var)
    return Estimate(auc, max(0.0, auc - Z95 * se), min(1.0, auc + Z95 * se), "DeLong", n)


def bootstrap_mean(values: Floats, reps: int, seed: int) -> Estimate:
    """The mean of per-case values with a percentile bootstrap 95% CI over cases."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return Estimate(math.nan, math.nan, math.nan, "bootstrap", 0)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(reps, len(values)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return Estimate(
        float(values.mean()), float(low), float(high), f"bootstrap ({reps})", len(values)
    )


def roc_points(scores: Floats, truth: npt.NDArray[np.int64]) -> tuple[Floats, Floats, Floats]:
    """Distinct score cut-offs (descending) and the sensitivity and specificity of
    calling ``score >= cut`` positive."""
    order = np.argsort(-scores, kind="mergesort")
    ordered, labels = scores[order], truth[order]
    tp, fp = np.cumsum(labels == 1), np.cumsum(labels == 0)
    last = np.r_[np.nonzero(np.diff(ordered))[0], len(ordered) - 1]
    positives, negatives = max(int(tp[-1]), 1), max(int(fp[-1]), 1)
    return ordered[last], tp[last] / positives, 1.0 - fp[last] / negatives


@dataclass(frozen=True)
class OperatingPointResult:
    """A threshold on one label's score, and what it achieves on the cases given."""

    name: str
    label: str
    threshold: float
    sensitivity: Estimate
    specificity: Estimate
    accuracy: Estimate
    ppv: Estimate
    npv: Estimate

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "name": self.name,
            "label": self.label,
            "threshold": self.threshold,
            **{
                k: getattr(self, k).to_dict()
                for k in ("sensitivity", "specificity", "accuracy", "ppv", "npv")
            },
        }


def at_threshold(
    scores: Floats, truth: npt.NDArray[np.int64], threshold: float, name: str, label: str
) -> OperatingPointResult:
    """Sensitivity, specificity, accuracy, PPV and NPV of ``score >= threshold``."""
    called = scores >= threshold
    tp = int(np.sum(called & (truth == 1)))
    tn = int(np.sum(~called & (truth == 0)))
    fp = int(np.sum(called & (truth == 0)))
    fn = int(np.sum(~called & (truth == 1)))
    return OperatingPointResult(
        name=name,
        label=label,
        threshold=threshold,
        sensitivity=wilson(tp, tp + fn),
        specificity=wilson(tn, tn + fp),
        accuracy=wilson(tp + tn, len(truth)),
        ppv=wilson(tp, tp + fp),
        npv=wilson(tn, tn + fn),
    )


def _between(cuts: Floats, index: int) -> float:
    below = float(cuts[index + 1]) if index + 1 < len(cuts) else 0.0
    return round(0.5 * (float(cuts[index]) + below), 6)


def operating_points(
    scores: Floats, truth: npt.NDArray[np.int64], label: str, sensitivity_target: float
) -> dict[str, float]:
    """Thresholds ``youden`` and ``high_sensitivity`` for one label, chosen on these cases.

    ``high_sensitivity`` is the highest threshold whose sensitivity reaches the target
    (so the best specificity among those that do).
    """
    cuts, sensitivity, specificity = roc_points(scores, truth)
    youden = int(np.argmax(sensitivity + specificity))
    reaching = np.nonzero(sensitivity >= sensitivity_target - 1e-12)[0]
    high = int(reaching[0]) if len(reaching) else len(cuts) - 1
    return {"youden": _between(cuts, youden), "high_sensitivity": _between(cuts, high)}
