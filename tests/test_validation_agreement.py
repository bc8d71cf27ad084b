"""Segmentation, detection and measurement agreement against independent computations
and published values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, binary_erosion
from scipy.spatial.distance import directed_hausdorff

from radpilot.validation.agreement import bland_altman, froc, icc_2_1, segmentation_metrics

# Shrout and Fleiss (1979), Table 2: 6 targets rated by 4 judges; ICC(2,1) = 0.29
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9],
                 [6, 2, 4, 7]]  # fmt: skip


def ball(shape: tuple[int, ...], centre: tuple[float, ...], radius: float) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def surface_mm(mask: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    edge = mask & ~binary_erosion(mask)
    return np.argwhere(edge) * np.asarray(spacing)


def test_segmentation_metrics_match_direct_computations() -> None:
    spacing = (2.0, 0.8, 0.8)
    reference = ball((24, 48, 48), (12, 24, 24), 8)
    shifted = ball((24, 48, 48), (12, 26, 24), 8)  # 2 voxels (1.6 mm) along one axis
    grown = binary_dilation(reference)
    result = segmentation_metrics([shifted, grown, np.zeros_like(reference)],
                                  [reference, reference, np.zeros_like(reference)],
                                  [spacing] * 3, tolerance_mm=2.0, reps=200)  # fmt: skip
    rows = result["cases"]
    for row, predicted in zip(rows[:2], [shifted, grown], strict=True):
        dice = 2 * (predicted & reference).sum() / (predicted.sum() + reference.sum())
        assert row["dice"] == pytest.approx(dice, rel=1e-6)
    a, b = surface_mm(shifted, spacing), surface_mm(reference, spacing)
    hd = max(directed_hausdorff(a, b)[0], directed_hausdorff(b, a)[0])
    assert 0 < rows[0]["hd95_mm"] <= hd + 1e-6
    assert rows[1]["surface_dice"] == pytest.approx(1.0)  # every surface point within 2 mm
    assert rows[2]["dice"] == 1.0 and math.isnan(rows[2]["hd95_mm"])  # both empty
    assert result["mean"]["dice"]["n"] == 3 and result["mean"]["hd95_mm"]["n"] == 2


def test_froc_counts_each_lesion_once() -> None:
    detections = [
        [(0.9, 0), (0.8, 0), (0.3, None)],  # image 0: lesion 0 found twice, one FP
        [(0.7, None), (0.6, 1), (0.2, 0)],  # image 1: two lesions, one FP first
        [(0.5, None)],  # image 2: no lesion, one FP
    ]
    result = froc(detections, [1, 2, 0])
    assert result["lesions"] == 3
    last = result["curve"][-1]
    assert last["sensitivity"] == 1.0 and last["fp_per_image"] == pytest.approx(1.0)
    # at 0.5 FP/image (1.5 FPs): thresholds down to 0.6 -> lesions 0 and image-1 lesion 1
    assert result["sensitivity_at_fp"]["0.5"] == pytest.approx(2 / 3)
    assert result["sensitivity_at_fp"]["1"] == 1.0


def test_icc_reproduces_shrout_and_fleiss() -> None:
    icc = icc_2_1(np.asarray(SHROUT_FLEISS))
    assert round(icc.value, 2) == 0.29
    assert icc.low < icc.value < icc.high


def test_bland_altman_limits_and_their_coverage() -> None:
    rng = np.random.default_rng(8)
    reference = rng.normal(50, 10, 40)
    measured = reference + rng.normal(1.5, 2.0, 40)
    result = bland_altman(measured, reference)
    d = measured - reference
    assert result["bias"]["value"] == pytest.approx(d.mean())
    assert result["upper_limit"]["value"] == pytest.approx(
        d.mean() + 1.959963984540054 * d.std(ddof=1)
    )
    hits = 0
    for _ in range(3000):
        diff = rng.normal(1.5, 2.0, 60)
        lower = bland_altman(diff, np.zeros(60))["lower_limit"]
        hits += lower["low"] <= 1.5 - 1.959963984540054 * 2.0 <= lower["high"]
    assert 0.93 <= hits / 3000 <= 0.97
    with pytest.raises(ValueError, match="at least 3"):
        bland_altman(np.ones(2), np.ones(2))
