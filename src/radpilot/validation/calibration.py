"""Calibration and clinical utility of a score read as a probability.

- Brier score: the mean squared difference between score and outcome.
- Reliability diagram: cases in equal-width score bins; per bin the mean score and the
  observed rate with its Wilson CI (the same bins as scikit-learn's
  ``calibration_curve(strategy="uniform")``: a score of exactly 1.0 falls in the last).
- Expected calibration error: ``sum over bins of (n_bin / N) |observed - mean score|``.
- Decision-curve net benefit (Vickers and Elkin 2006) at threshold probability ``t``:
  ``TP/N - FP/N * t / (1 - t)``, beside "treat all" and "treat none" (0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from radpilot.validation.stats import wilson

__all__ = ["brier", "expected_calibration_error", "net_benefit", "reliability"]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def brier(scores: Floats, labels: Ints) -> float:
    """Mean squared error of the scores as probabilities of the positive class."""
    return float(np.mean((scores - labels) ** 2))


def _bins(scores: Floats, bins: int) -> Ints:
    edges = np.linspace(0.0, 1.0, bins + 1)
    index: Ints = np.searchsorted(edges[1:-1], scores, side="right").astype(np.int64)
    return index


def reliability(scores: Floats, labels: Ints, bins: int = 10) -> list[dict[str, Any]]:
    """One entry per non-empty bin: edges, cases, mean score, observed rate (Wilson CI)."""
    index = _bins(scores, bins)
    out = []
    for b in range(bins):
        member = index == b
        n = int(member.sum())
        if n == 0:
            continue
        observed = wilson(int(labels[member].sum()), n)
        out.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "n": n,
                "mean_score": float(scores[member].mean()),
                "observed": observed.to_dict(),
            }
        )
    return out


def expected_calibration_error(scores: Floats, labels: Ints, bins: int = 10) -> float:
    """ECE over equal-width bins, weighted by the cases in each."""
    index = _bins(scores, bins)
    total = 0.0
    for b in range(bins):
        member = index == b
        if member.any():
            total += member.sum() * abs(labels[member].mean() - scores[member].mean())
    return float(total / len(scores))


def net_benefit(scores: Floats, labels: Ints, thresholds: Floats) -> list[dict[str, float]]:
    """Net benefit of acting on ``score >= t``, of treating all, at each ``t`` in (0, 1)."""
    n = len(labels)
    prevalence = float(labels.mean())
    out = []
    for t in thresholds:
        odds = t / (1.0 - t)
        called = scores >= t
        tp = float(np.sum(called & (labels == 1)))
        fp = float(np.sum(called & (labels == 0)))
        out.append(
            {
                "threshold": float(t),
                "model": tp / n - fp / n * odds,
                "treat_all": prevalence - (1.0 - prevalence) * odds,
                "treat_none": 0.0,
            }
        )
    return out
