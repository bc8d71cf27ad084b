"""Validation of segmentations, detections and measurements.

- **Segmentation**, per case, with MONAI's metrics: Dice, the 95th-percentile Hausdorff
  distance and the surface Dice at a tolerance (both in millimetres, with the voxel
  spacing); summarised as means with a percentile bootstrap CI over cases.
- **Detection**: the FROC curve (lesion sensitivity against false positives per image
  as the score threshold falls) and the sensitivity at 0.5, 1 and 2 false positives per
  image; a detection is a hit when it lies on an unmatched lesion (each lesion counts
  once, extra detections on it are neither hits nor false positives, as in LUNA16).
- **Measurements** against a reference: Bland-Altman bias and 95% limits of agreement
  with their CIs (Bland and Altman 1999: variance of a limit ``3 s² / n``), and the
  intraclass correlation ICC(2,1), two-way random effects, absolute agreement, single
  rater (Shrout and Fleiss 1979), with its F-based 95% CI (McGraw and Wong 1996).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from radpilot.validation.stats import Z95, Estimate, bootstrap_mean

__all__ = ["bland_altman", "froc", "icc_2_1", "segmentation_metrics"]

Floats = npt.NDArray[np.float64]


def _one_hot(mask: npt.NDArray[np.bool_]) -> torch.Tensor:
    fg = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    return torch.cat([1 - fg, fg], dim=1)


def segmentation_metrics(
    predicted: Sequence[npt.NDArray[np.bool_]],
    reference: Sequence[npt.NDArray[np.bool_]],
    spacing: Sequence[Sequence[float]],
    tolerance_mm: float = 2.0,
    reps: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-case Dice, HD95 (mm) and surface Dice, and their means with bootstrap CIs.

    Cases where both masks are empty count as Dice 1 and are left out of the distances.
    """
    from monai.metrics.hausdorff_distance import compute_hausdorff_distance
    from monai.metrics.meandice import compute_dice
    from monai.metrics.surface_dice import compute_surface_dice

    rows = []
    for p, r, s in zip(predicted, reference, spacing, strict=True):
        both_empty = not p.any() and not r.any()
        yp, yr = _one_hot(p), _one_hot(r)
        dice = 1.0 if both_empty else float(compute_dice(yp, yr, include_background=False))
        if both_empty or not p.any() or not r.any():
            hd95 = surface = math.nan
        else:
            with warnings.catch_warnings():
                # MONAI 1.6's surface Dice passes its own deprecated argument internally
                warnings.filterwarnings("ignore", message=r".*always_return_as_numpy")
                hd95 = float(compute_hausdorff_distance(yp, yr, percentile=95, spacing=list(s)))
                surface = float(compute_surface_dice(yp, yr, [tolerance_mm], spacing=list(s)))
        rows.append({"dice": dice, "hd95_mm": hd95, "surface_dice": surface})
    summary = {}
    for key in ("dice", "hd95_mm", "surface_dice"):
        values = np.asarray([row[key] for row in rows], dtype=np.float64)
        values = values[np.isfinite(values)]
        summary[key] = bootstrap_mean(values, reps, seed).to_dict()
    return {"cases": rows, "mean": summary, "tolerance_mm": tolerance_mm}


def froc(
    detections: Sequence[Sequence[tuple[float, int | None]]],
    lesions: Sequence[int],
    fp_rates: Sequence[float] = (0.5, 1.0, 2.0),
) -> dict[str, Any]:
    """FROC from per-image detections ``(score, lesion index or None)``.

    ``detections[i]`` lists image ``i``'s detections with the lesion each lies on (as the
    caller's matching decided, or None); ``lesions[i]`` is how many lesions image ``i``
    has. Returns the curve and the sensitivity at each rate of false positives per image.
    """
    total = sum(lesions)
    images = len(lesions)
    events = []  # (score, image, lesion)
    for image, found in enumerate(detections):
        events += [(score, image, lesion) for score, lesion in found]
    events.sort(key=lambda e: -e[0])
    hit: set[tuple[int, int]] = set()
    fps, curve = 0, []
    for score, image, lesion in events:
        if lesion is None:
            fps += 1
        elif (image, lesion) not in hit:
            hit.add((image, lesion))
        curve.append({"threshold": score, "fp_per_image": fps / images,
                      "sensitivity": len(hit) / total if total else math.nan})  # fmt: skip
    at = {}
    for rate in fp_rates:
        reached = [c["sensitivity"] for c in curve if c["fp_per_image"] <= rate]
        at[f"{rate:g}"] = max(reached) if reached else 0.0
    return {"lesions": total, "images": images, "curve": curve, "sensitivity_at_fp": at}


def bland_altman(measured: Floats, reference: Floats) -> dict[str, Any]:
    """Bias and 95% limits of agreement of ``measured - reference``, each with its CI."""
    d = np.asarray(measured, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    n = len(d)
    if n < 3:
        raise ValueError("Bland-Altman needs at least 3 pairs")
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    se_bias, se_limit = sd / math.sqrt(n), math.sqrt(3 * sd**2 / n)

    def est(value: float, se: float) -> dict[str, Any]:
        return Estimate(value, value - Z95 * se, value + Z95 * se, "Bland-Altman 1999", n).to_dict()

    return {"n": n, "bias": est(bias, se_bias), "sd": sd,
            "lower_limit": est(bias - Z95 * sd, se_limit),
            "upper_limit": est(bias + Z95 * sd, se_limit)}  # fmt: skip


def icc_2_1(ratings: Floats) -> Estimate:
    """ICC(2,1) of ``(targets, raters)`` ratings, with the McGraw-Wong F-based 95% CI."""
    from scipy.stats import f as f_dist

    x = np.asarray(ratings, dtype=np.float64)
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_err = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    msr, msc = ss_rows / (n - 1), ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    icc = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    # McGraw and Wong (1996), case 2A: approximate degrees of freedom for the denominator
    a = k * icc / (n * (1 - icc))
    b = 1 + k * icc * (n - 1) / (n * (1 - icc))
    v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
    f_low = f_dist.ppf(0.975, n - 1, v)
    f_high = f_dist.ppf(0.975, v, n - 1)
    low = n * (msr - f_low * mse) / (f_low * (k * msc + (k * n - k - n) * mse) + n * msr)
    high = n * (f_high * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f_high * msr)
    return Estimate(float(icc), float(low), float(high), "ICC(2,1), McGraw-Wong", n)
