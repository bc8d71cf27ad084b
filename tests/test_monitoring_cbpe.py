"""CBPE (issue 7): the label-free estimate recovers the measured sensitivity and
specificity when scores are calibrated, and after Platt scaling when they are not."""

from __future__ import annotations

import numpy as np
import pytest

from radpilot.monitoring.cbpe import estimate, fit_platt


def measured(scores: np.ndarray, labels: np.ndarray, t: float) -> tuple[float, float]:
    called = scores >= t
    return (
        float((called & (labels == 1)).sum() / (labels == 1).sum()),
        float((~called & (labels == 0)).sum() / (labels == 0).sum()),
    )


def test_calibrated_scores() -> None:
    rng = np.random.default_rng(1)
    p = rng.beta(0.8, 1.6, 4000)
    labels = (rng.random(p.size) < p).astype(int)
    found = estimate(p, 0.5)
    sens, spec = measured(p, labels, 0.5)
    assert found["estimate"] is True and found["n"] == 4000
    for name, truth in (("sensitivity", sens), ("specificity", spec)):
        e = found[name]
        assert e["low"] <= e["value"] <= e["high"]
        assert abs(e["value"] - truth) < 0.03, (name, e, truth)
    assert found["expected_prevalence"] == pytest.approx(labels.mean(), abs=0.02)


def test_miscalibrated_scores_need_platt() -> None:
    rng = np.random.default_rng(2)
    p = rng.beta(1.0, 1.5, 6000)
    labels = (rng.random(p.size) < p).astype(int)
    logit = np.log(p / (1 - p))
    scores = 1 / (1 + np.exp(-(2.5 * logit + 1.0)))  # overconfident and shifted
    reference, live = slice(0, 2000), slice(2000, None)
    sens, _ = measured(scores[live], labels[live], 0.5)
    naive = estimate(scores[live], 0.5)
    platt = fit_platt(scores[reference], labels[reference])
    fixed = estimate(scores[live], 0.5, platt)
    assert abs(fixed["sensitivity"]["value"] - sens) < 0.03
    assert abs(naive["sensitivity"]["value"] - sens) > abs(fixed["sensitivity"]["value"] - sens)
    assert fixed["calibration"].startswith("Platt")
    with pytest.raises(ValueError, match="both classes"):
        fit_platt([0.2] * 20, [0] * 20)
