"""Do the nominal 95% intervals cover the truth 93-97% of the time? Simulated draws with
known truth, seeded (so each run is the same draw); each interval as radpilot computes it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from radpilot.validation import bootstrap as bs
from radpilot.validation.prevalence import at_prevalence
from radpilot.validation.stats import delong_auc, wilson

LOW, HIGH = 0.93, 0.97


def covered(intervals: list[tuple[float, float]], truth: float) -> float:
    return float(np.mean([lo <= truth <= hi for lo, hi in intervals]))


@pytest.mark.parametrize(("p", "n"), [(0.90, 80), (0.70, 200), (0.97, 150)])
def test_wilson_interval_of_a_proportion(p: float, n: int) -> None:
    rng = np.random.default_rng(1)
    draws = rng.binomial(n, p, size=4000)
    intervals = {k: wilson(int(k), n) for k in np.unique(draws)}
    assert LOW <= covered([(intervals[k].low, intervals[k].high) for k in draws], p) <= HIGH


def test_delong_interval_of_the_auc() -> None:
    """Binormal scores, separation d: AUC = Phi(d / sqrt 2)."""
    rng = np.random.default_rng(2)
    d, m, n = 1.2, 80, 120
    truth = 0.5 * (1 + math.erf(d / 2))  # Phi(d / sqrt 2)
    labels = np.r_[np.ones(m), np.zeros(n)].astype(np.int64)
    intervals = []
    for _ in range(2000):
        scores = np.r_[rng.normal(d, 1, m), rng.normal(0, 1, n)]
        auc = delong_auc(scores, labels)
        assert auc is not None
        intervals.append((auc.low, auc.high))
    assert LOW <= covered(intervals, truth) <= HIGH


@pytest.mark.parametrize("prevalence", [0.05, 0.30])
def test_predictive_values_at_a_declared_prevalence(prevalence: float) -> None:
    rng = np.random.default_rng(3)
    se, sp, n1, n0 = 0.88, 0.85, 150, 250
    ppv = se * prevalence / (se * prevalence + (1 - sp) * (1 - prevalence))
    npv = sp * (1 - prevalence) / (sp * (1 - prevalence) + (1 - se) * prevalence)
    ppvs, npvs, missed = [], [], []
    for tp, tn in zip(rng.binomial(n1, se, 3000), rng.binomial(n0, sp, 3000), strict=True):
        out = at_prevalence(int(tp), int(n1 - tp), int(tn), int(n0 - tn), prevalence)
        ppvs.append((out.ppv.low, out.ppv.high))
        npvs.append((out.npv.low, out.npv.high))
        missed.append((out.missed_per_10000.low, out.missed_per_10000.high))
    assert LOW <= covered(ppvs, ppv) <= HIGH
    assert LOW <= covered(npvs, npv) <= HIGH
    assert LOW <= covered(missed, 10_000 * prevalence * (1 - se)) <= HIGH


def test_patient_bootstrap_covers_where_studies_of_a_patient_are_alike() -> None:
    """Patients with 1-6 studies each whose detectability is shared (a patient-level
    random effect): case-level Wilson intervals, which assume independent studies, cover
    too rarely; the patient bootstrap covers at the nominal rate."""
    rng = np.random.default_rng(4)

    def draw(patients: int) -> tuple[np.ndarray, np.ndarray]:
        studies = rng.integers(1, 7, size=patients)
        index = np.repeat(np.arange(patients), studies)
        patient_p = 1 / (1 + np.exp(-(1.6 + rng.normal(0, 1.5, size=patients))))
        return index, rng.random(len(index)) < patient_p[index]

    # the truth: the share of detected studies in the population, from a very large draw
    _, big_hit = draw(400_000)
    truth = float(big_hit.mean())
    boot, naive = [], []
    for sim in range(600):
        index, hit = draw(120)
        est = bs.interval(float(hit.mean()), bs.ratio(hit, np.ones_like(hit)), index,
                          reps=400, seed=sim)  # fmt: skip
        boot.append((est.low, est.high))
        w = wilson(int(hit.sum()), len(hit))
        naive.append((w.low, w.high))
    assert covered(naive, truth) < LOW  # the reason for resampling patients
    assert LOW <= covered(boot, truth) <= HIGH
