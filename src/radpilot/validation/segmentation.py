"""Validation of a segmentation model against reference DICOM Segmentation objects.

A reference is a DICOM SEG (an annotator's, from any tool that writes the standard)
over one series that radpilot holds. The model runs on that series, exactly as in the
pipeline; its mask and the reference's, both over the model's image order, are compared
per segment label (matched case-insensitively to the model's output labels) with
:func:`radpilot.validation.agreement.segmentation_metrics` (Dice, HD95 and surface Dice in
mm with the series' voxel spacing, means with bootstrap CIs). highdicom reads the SEG and
places its frames on the source instances, so a reference that lists frames in another
order, or omits empty ones, is read correctly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from radpilot.validation.agreement import segmentation_metrics
from radpilot.validation.cases import Exclusion

__all__ = ["ReferenceSeg", "compare_masks", "read_references", "spacing_of", "summarise"]

Mask = npt.NDArray[np.bool_]


@dataclass
class ReferenceSeg:
    """One reference segmentation and what it refers to."""

    name: str  # the file name, for exclusions
    study_instance_uid: str
    series_instance_uid: str
    segments: dict[str, int]  # lower-cased segment label -> segment number
    seg: hd.seg.Segmentation


def read_references(folder: Path) -> tuple[list[ReferenceSeg], list[Exclusion]]:
    """Every DICOM SEG under ``folder`` (recursively); other files are excluded with why."""
    found: list[ReferenceSeg] = []
    excluded: list[Exclusion] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            seg = hd.seg.segread(path)
        except Exception as exc:  # noqa: BLE001 - pydicom/highdicom raise many kinds
            excluded.append(
                Exclusion(path.name, f"not a DICOM Segmentation ({type(exc).__name__})")
            )
            continue
        series = [
            str(item.SeriesInstanceUID)
            for item in seg.get("ReferencedSeriesSequence", [])
            if "SeriesInstanceUID" in item
        ]
        if len(set(series)) != 1:
            why = "refers to no series" if not series else "refers to several series"
            excluded.append(Exclusion(path.name, why))
            continue
        segments = {
            str(s.SegmentLabel).strip().lower(): int(s.SegmentNumber) for s in seg.SegmentSequence
        }
        found.append(ReferenceSeg(path.name, str(seg.StudyInstanceUID), series[0], segments, seg))
    return found, excluded


def spacing_of(datasets: Sequence[Dataset]) -> tuple[float, ...]:
    """(slice, row, column) spacing in mm of ``datasets`` in this order; (row, column) for
    one image. The slice spacing is the distance between the first two positions, else
    Spacing Between Slices, else Slice Thickness, else 1."""
    first = datasets[0]
    pixel = [float(v) for v in first.get("PixelSpacing", [1.0, 1.0])]
    if len(datasets) == 1:
        return pixel[0], pixel[1]
    a, b = (np.asarray(d.get("ImagePositionPatient", [0, 0, 0]), float) for d in datasets[:2])
    between = float(np.linalg.norm(b - a))
    if not between:
        between = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
    return between, pixel[0], pixel[1]


def compare_masks(
    predicted: dict[str, Mask],
    image_uids: Sequence[str],
    reference: ReferenceSeg,
    labels: Sequence[str],
    shape: tuple[int, int],
) -> tuple[dict[str, tuple[Mask, Mask]], str | None]:
    """(predicted, reference) masks per model label that the reference also segments,
    both (frames, rows, cols) over ``image_uids``; or why the case cannot be compared."""
    pairs: dict[str, tuple[Mask, Mask]] = {}
    for label in labels:
        number = reference.segments.get(label.strip().lower())
        if number is None:
            continue
        try:
            pixels = reference.seg.get_pixels_by_source_instance(
                list(image_uids), segment_numbers=[number], skip_overlap_checks=True
            )
        except (ValueError, KeyError, AttributeError) as exc:
            return {}, f"reference SEG does not cover the model's images ({type(exc).__name__})"
        ref = np.asarray(pixels[..., 0] > 0)
        pred = predicted.get(label)
        if pred is None:
            pred = np.zeros((len(image_uids), *shape), dtype=bool)
        if pred.shape != ref.shape:
            return {}, f"reference SEG frames are {ref.shape[1:]}, images {pred.shape[1:]}"
        pairs[label] = (pred, ref)
    if not pairs:
        return {}, "no segment label of the reference matches the model's labels"
    return pairs, None


def summarise(
    per_label: dict[str, list[tuple[str, Mask, Mask, tuple[float, ...]]]],
    *,
    tolerance_mm: float = 2.0,
    bootstrap: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Per label: every case's Dice, HD95 and surface Dice, and their means with CIs."""
    out: dict[str, Any] = {}
    for label, items in per_label.items():
        cases = [c for c, *_ in items]
        two_d = [(p[0], r[0], s) if p.shape[0] == 1 and len(s) == 2 else (p, r, s)
                 for _, p, r, s in items]  # fmt: skip
        metrics = segmentation_metrics(
            [p for p, _, _ in two_d], [r for _, r, _ in two_d], [s for _, _, s in two_d],
            tolerance_mm=tolerance_mm, reps=bootstrap, seed=seed,
        )  # fmt: skip
        for case, row, (_, p, r, _) in zip(cases, metrics["cases"], items, strict=True):
            row.update(case_id=case, predicted_voxels=int(p.sum()), reference_voxels=int(r.sum()))
        dice = np.asarray([row["dice"] for row in metrics["cases"]])
        metrics["median_dice"] = float(np.median(dice)) if len(dice) else math.nan
        metrics["both_empty"] = sum(
            1
            for row in metrics["cases"]
            if not row["predicted_voxels"] and not row["reference_voxels"]
        )
        metrics["n"] = len(items)
        out[label] = metrics
    return out
