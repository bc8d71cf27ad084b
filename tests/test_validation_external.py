"""External validation on a real, known shift: the reference model's official validation
split (where its thresholds were chosen) against the official test split, both scored
through radpilot's runtime on DICOM. PneumoniaMNIST's test split is known to be harder on
normal images: the comparison must find the specificity drop and get its sign right."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import recall_score, roc_auc_score

from radpilot.validation.cases import CaseTable
from radpilot.validation.external import compare_sets
from radpilot.validation.stats import delong
from tests.reference_helpers import NPZ, reference_scores

POINTS = {"youden": 0.513088, "high_sensitivity": 0.879522}  # the package's


def table(split: str) -> CaseTable:
    scores, labels = reference_scores(split)
    ids = [f"{split}-{i}" for i in range(len(labels))]
    return CaseTable(ids, ids, scores, labels)


@pytest.mark.skipif(not NPZ.exists(), reason=f"PneumoniaMNIST not found at {NPZ}")
def test_val_against_test_finds_the_specificity_drop() -> None:
    val, test = table("val"), table("test")
    result = compare_sets(val, test, POINTS, names=("validation split", "test split"))
    diff = result["difference"]
    auc_gap = roc_auc_score(test.labels, test.scores) - roc_auc_score(val.labels, val.scores)
    assert diff["auc"]["value"] == pytest.approx(auc_gap, abs=1e-12)
    assert diff["auc"]["low"] < diff["auc"]["value"] < diff["auc"]["high"]
    spec = diff["youden"]["specificity"]
    called = {s: t.scores >= POINTS["youden"] for s, t in (("val", val), ("test", test))}
    expected = recall_score(test.labels, called["test"], pos_label=0) - recall_score(
        val.labels, called["val"], pos_label=0
    )
    assert spec["value"] == pytest.approx(expected, abs=1e-12)
    assert spec["differs"] and spec["high"] < 0  # lower on the test split
    assert set(result["reports"]) == {"validation split", "test split"}


def test_auc_difference_interval_covers_the_truth() -> None:
    """Two independent binormal sets, separations 1.0 and 1.5."""
    rng = np.random.default_rng(6)

    def phi(x: float) -> float:
        return 0.5 * (1 + math.erf(x / math.sqrt(2)))

    truth = phi(1.5 / math.sqrt(2)) - phi(1.0 / math.sqrt(2))
    hits = 0
    labels = np.r_[np.ones(70), np.zeros(90)].astype(np.int64)
    ids = [str(i) for i in range(len(labels))]
    for i in range(1500):
        a = np.r_[rng.normal(1.0, 1, 70), rng.normal(0, 1, 90)]
        b = np.r_[rng.normal(1.5, 1, 70), rng.normal(0, 1, 90)]
        first, second = CaseTable(ids, ids, a, labels), CaseTable(ids, ids, b, labels)
        da, db = delong(a, labels), delong(b, labels)
        assert da is not None and db is not None
        d = db[0] - da[0]
        half = 1.959963984540054 * math.sqrt(da[1] + db[1])
        hits += d - half <= truth <= d + half
        if i == 0:  # the module computes exactly this
            got = compare_sets(first, second, {"t": 0.5})["difference"]["auc"]
            assert (got["low"], got["high"]) == pytest.approx((d - half, d + half))
    assert 0.93 <= hits / 1500 <= 0.97
