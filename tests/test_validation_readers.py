"""Readers: agreement statistics against scikit-learn, SciPy and Fleiss' published
example; the model against each reader on the reference model's real test-split scores,
with three readers whose reads are drawn (seeded) at known accuracies from the truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score

from radpilot.validation.readers import (
    cohen_kappa,
    compare_readers,
    fleiss_kappa,
    majority,
    mcnemar_exact,
)
from tests.reference_helpers import NPZ, reference_scores

# Fleiss (1971), as reproduced in most textbooks: 10 subjects, 14 raters, 5 categories
FLEISS_1971 = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
               [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
               [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]  # fmt: skip


def test_fleiss_kappa_reproduces_the_published_example() -> None:
    kappa = fleiss_kappa(np.asarray(FLEISS_1971), reps=500)
    assert kappa.value == pytest.approx(0.2099, abs=1e-4)
    assert kappa.low < kappa.value < kappa.high
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa(np.asarray([[1, 1], [2, 1]]))


def test_mcnemar_exact_is_the_binomial_test() -> None:
    for b, c in [(0, 0), (3, 9), (10, 2), (25, 40), (7, 7)]:
        expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
        assert mcnemar_exact(b, c) == pytest.approx(expected)


@pytest.mark.skipif(not NPZ.exists(), reason=f"PneumoniaMNIST not found at {NPZ}")
def test_model_against_three_readers_on_real_scores() -> None:
    scores, truth = reference_scores("test")
    rng = np.random.default_rng(7)
    accuracy = {"A": (0.95, 0.90), "B": (0.85, 0.95), "C": (0.70, 0.80)}
    cases = [f"case-{i}" for i in range(len(truth))]
    reads = {}
    for name, (sens, spec) in accuracy.items():
        right = rng.random(len(truth)) < np.where(truth == 1, sens, spec)
        labels = np.where(right, truth, 1 - truth)
        reads[name] = {c: int(v) for c, v in zip(cases, labels, strict=True)}
    calls = {c: bool(s >= 0.513088) for c, s in zip(cases, scores, strict=True)}
    result = compare_readers(reads, calls, reps=300)
    for pair, entry in result["cohen"].items():
        a, b = pair.split(" / ")
        expected = cohen_kappa_score([reads[a][c] for c in cases], [reads[b][c] for c in cases])
        assert entry["kappa"]["value"] == pytest.approx(expected, abs=1e-12)
    assert result["fleiss"]["cases"] == len(cases)
    assert 0.3 < result["fleiss"]["kappa"]["value"] < 0.9
    c = result["model_vs_readers"]["C"]
    # C's reference is the majority of A and B; on their agreeing cases only
    reference = {k: majority(reads, k, leave_out="C") for k in cases}
    positives = [k for k in cases if reference[k] == 1]
    assert c["sensitivity"]["reader"]["n"] == len(positives)
    assert c["sensitivity"]["model"]["value"] == pytest.approx(
        np.mean([calls[k] for k in positives])
    )
    assert c["sensitivity"]["model"]["value"] > c["sensitivity"]["reader"]["value"]
    assert c["sensitivity"]["p_mcnemar"] < 0.001  # the weakest reader misses far more
    assert result["reference"]["ties"] == 0  # three readers never tie


def test_cohen_kappa_interval_brackets_the_estimate() -> None:
    a = np.asarray([1, 1, 0, 0, 1, 0, 1, 1, 0, 0] * 10)
    b = np.asarray([1, 0, 0, 0, 1, 0, 1, 1, 1, 0] * 10)
    kappa = cohen_kappa(a, b, reps=500)
    assert kappa.value == pytest.approx(cohen_kappa_score(a, b))
    assert kappa.low < kappa.value < kappa.high
