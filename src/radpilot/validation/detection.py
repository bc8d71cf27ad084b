"""Validation of a detection model: its boxes against reference boxes, as FROC.

A reference box is a row of a CSV: the image's ``sop_instance_uid`` (and ``frame``, from
1, for multi-frame images), the ``label`` and ``x0``, ``y0``, ``x1``, ``y1`` in that
image's pixels (top-left inclusive, bottom-right exclusive, as radpilot's own boxes).
A row without coordinates says the image was read and holds no lesion. The model runs on
the studies of the images listed; every image it saw counts, with or without reference
boxes. On each image, detections are taken in descending score and
each is matched to the unmatched reference box of its label with the largest
intersection over union, if that reaches ``threshold`` (0.3 by default: a lesion's box
drawn by two readers rarely agrees better); a detection matched to nothing is a false
positive. From these matches :func:`radpilot.validation.agreement.froc` draws the curve;
the sensitivity at 0.5, 1 and 2 false positives per image gets a percentile CI from a
bootstrap over images (each image's detections and lesions travel together).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radpilot.models.prediction import Box
from radpilot.validation.agreement import froc
from radpilot.validation.cases import Exclusion, ValidationDataError

__all__ = [
    "ImageKey",
    "RefBox",
    "evaluate_detection",
    "iou",
    "match_image",
    "read_reference_boxes",
    "reference_boxes",
]

FP_RATES = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class RefBox:
    """A reference box on one image."""

    label: str
    x0: float
    y0: float
    x1: float
    y1: float


def iou(a: Box | RefBox, b: Box | RefBox) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter
    return inter / union if union > 0 else 0.0


ImageKey = tuple[str, int]  # SOP Instance UID, frame (1-based)


def read_reference_boxes(path: Path) -> tuple[dict[ImageKey, list[RefBox]], list[Exclusion]]:
    """Reference boxes by (SOP Instance UID, frame); unusable rows are excluded with why."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    return reference_boxes(rows)


def reference_boxes(
    rows: Iterable[Mapping[str, Any]],
) -> tuple[dict[ImageKey, list[RefBox]], list[Exclusion]]:
    """As :func:`read_reference_boxes`, from rows already read."""
    boxes: dict[ImageKey, list[RefBox]] = {}
    excluded: list[Exclusion] = []
    for number, row in enumerate(rows, start=1):
        where = f"row {number}"
        uid = str(row.get("sop_instance_uid") or "").strip()
        label = str(row.get("label") or "").strip().lower()
        if not uid or not label:
            excluded.append(Exclusion(where, "no sop_instance_uid or label"))
            continue
        coords = [str(row.get(k) or "").strip() for k in ("x0", "y0", "x1", "y1")]
        try:
            frame = int(str(row.get("frame") or "1").strip())
            if not any(coords):  # read, and nothing found: the image counts for false positives
                boxes.setdefault((uid, frame), [])
                continue
            x0, y0, x1, y1 = (float(c) for c in coords)
        except (KeyError, ValueError):
            excluded.append(Exclusion(where, "x0, y0, x1, y1 (or frame) missing or not numbers"))
            continue
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
            excluded.append(Exclusion(where, "not a box (x1 <= x0 or y1 <= y0)"))
            continue
        boxes.setdefault((uid, frame), []).append(RefBox(label, x0, y0, x1, y1))
    if not any(boxes.values()):
        raise ValidationDataError(f"no usable reference box ({len(excluded)} row(s) excluded)")
    return boxes, excluded


def match_image(
    detections: Sequence[Box], references: Sequence[RefBox], label: str, threshold: float
) -> list[tuple[float, int | None]]:
    """``(score, matched reference index or None)`` for one image's detections of
    ``label``, greedy in descending score."""
    refs = [(i, r) for i, r in enumerate(references) if r.label == label]
    taken: set[int] = set()
    out: list[tuple[float, int | None]] = []
    for det in sorted((d for d in detections if d.label.lower() == label),
                      key=lambda d: -d.score):  # fmt: skip
        best, best_iou = None, threshold
        for i, ref in refs:
            overlap = iou(det, ref)
            if i not in taken and overlap >= best_iou:
                best, best_iou = i, overlap
        if best is not None:
            taken.add(best)
        out.append((det.score, best))
    return out


def evaluate_detection(
    images: Sequence[tuple[Sequence[Box], Sequence[RefBox]]],
    labels: Sequence[str],
    *,
    threshold: float = 0.3,
    bootstrap: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Per label: the FROC curve and the sensitivity at 0.5, 1 and 2 false positives per
    image with bootstrap CIs; ``images`` holds each image's detections and references."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"iou_threshold": threshold, "images": len(images), "labels": {}}
    for label in (lbl.lower() for lbl in labels):
        found = [match_image(d, r, label, threshold) for d, r in images]
        lesions = [sum(1 for ref in r if ref.label == label) for _, r in images]
        if not sum(lesions):
            out["labels"][label] = {"lesions": 0, "why": "no reference box of this label"}
            continue
        result = froc(found, lesions, FP_RATES)
        draws: dict[str, list[float]] = {f"{r:g}": [] for r in FP_RATES}
        for _ in range(bootstrap):
            pick = rng.integers(0, len(images), len(images))
            sample = froc([found[i] for i in pick], [lesions[i] for i in pick], FP_RATES)
            if sample["lesions"]:
                for key, value in sample["sensitivity_at_fp"].items():
                    draws[key].append(value)
        result["sensitivity_at_fp"] = {
            key: _estimate(value, draws[key], len(images))
            for key, value in result["sensitivity_at_fp"].items()
        }
        result["detections"] = sum(len(f) for f in found)
        result["false_positives"] = sum(1 for f in found for _, m in f if m is None)
        out["labels"][label] = result
    return out


def _estimate(value: float, draws: list[float], n: int) -> dict[str, Any]:
    if not draws:
        return {"value": value, "low": math.nan, "high": math.nan, "method": "no replicate", "n": n}
    low, high = np.quantile(draws, [0.025, 0.975])
    method = f"bootstrap by image ({len(draws)} replicates)"
    return {"value": value, "low": float(low), "high": float(high), "method": method, "n": n}
