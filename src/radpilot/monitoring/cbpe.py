"""Performance without labels: confidence-based performance estimation (CBPE).

If a model's scores are calibrated probabilities ``p_i`` of the finding, the confusion
matrix at threshold ``t`` has the expected counts ``E[TP] = Σ p_i [s_i ≥ t]``,
``E[FP] = Σ (1 - p_i) [s_i ≥ t]``, ``E[FN] = Σ p_i [s_i < t]`` and
``E[TN] = Σ (1 - p_i) [s_i < t]``, from which sensitivity, specificity and PPV follow.
The interval comes from drawing the labels ``y_i ~ Bernoulli(p_i)`` 2,000 times. Scores
are first recalibrated with Platt scaling (a logistic fit of the label on the score's
logit, SciPy) on a labelled reference set when one is given; without one the scores are
taken as calibrated, which the result says. It is an **estimate**, not a measurement:
it is right only while the relation between score and truth is the one calibrated — the
kind of change that covariate-shift monitoring (drift) watches for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

__all__ = ["Platt", "estimate", "fit_platt"]

_EPS = 1e-6


@dataclass(frozen=True)
class Platt:
    """``p = 1 / (1 + exp(-(a * logit(score) + b)))``."""

    a: float = 1.0
    b: float = 0.0

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        s = np.clip(scores, _EPS, 1 - _EPS)
        calibrated: np.ndarray = 1.0 / (1.0 + np.exp(-(self.a * np.log(s / (1 - s)) + self.b)))
        return calibrated


def fit_platt(scores: Sequence[float], labels: Sequence[int]) -> Platt:
    """Platt scaling fitted by maximum likelihood on a labelled reference set.

    Raises
    ------
    ValueError
        With fewer than 10 cases, or without both classes.
    """
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=float)
    if s.size < 10 or y.min() == y.max():
        raise ValueError("Platt scaling needs at least 10 labelled cases of both classes")
    x = np.log(np.clip(s, _EPS, 1 - _EPS) / (1 - np.clip(s, _EPS, 1 - _EPS)))

    def loss(params: np.ndarray) -> float:
        z = params[0] * x + params[1]
        return float(np.sum(np.logaddexp(0, z) - y * z))

    found = minimize(loss, np.array([1.0, 0.0]), method="BFGS")
    return Platt(float(found.x[0]), float(found.x[1]))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def estimate(
    scores: Sequence[float],
    threshold: float,
    calibration: Platt | None = None,
    reps: int = 2000,
    seed: int = 0,
) -> dict[str, object]:
    """Estimated sensitivity, specificity and PPV at ``threshold`` with 95% intervals."""
    s = np.asarray(scores, dtype=float)
    if s.size == 0:
        return {"n": 0, "method": "CBPE", "estimate": True}
    p = (calibration or Platt())(s)
    called = s >= threshold
    rng = np.random.default_rng(seed)
    y = rng.random((reps, s.size)) < p  # labels drawn from the calibrated probabilities
    tp = (y & called).sum(axis=1)
    fn = (y & ~called).sum(axis=1)
    fp = (~y & called).sum(axis=1)
    tn = (~y & ~called).sum(axis=1)
    drawn = {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
    }
    expected = {
        "sensitivity": float(np.sum(p * called) / max(np.sum(p), _EPS)),
        "specificity": float(np.sum((1 - p) * ~called) / max(np.sum(1 - p), _EPS)),
        "ppv": float(np.sum(p * called) / np.sum(called)) if called.any() else math.nan,
    }
    out: dict[str, object] = {
        "n": int(s.size),
        "threshold": threshold,
        "method": "CBPE",
        "estimate": True,
        "calibration": "Platt scaling on labelled reference cases"
        if calibration
        else "none (scores taken as calibrated probabilities)",
        "expected_prevalence": float(p.mean()),
    }
    for name, values in drawn.items():
        finite = values[np.isfinite(values)]
        low, high = np.percentile(finite, [2.5, 97.5]) if finite.size else (math.nan, math.nan)
        out[name] = {"value": expected[name], "low": float(low), "high": float(high)}
    return out
