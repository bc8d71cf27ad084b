"""What a model said about a study, in the source images' own coordinates.

Runtimes produce it, the job runner checks it, the result writers (SR, SEG, key image,
derived series, reports) turn it into DICOM and text. Pixel coordinates are (column, row)
of the referenced source image, 0-based, as DICOM SR SCOORD uses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from radpilot.core.errors import ModelError

__all__ = ["Box", "Finding", "ImageRef", "Measurement", "Prediction", "headline_key"]


@dataclass(frozen=True)
class ImageRef:
    """One source image (a frame of an instance) a result refers to."""

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    frame: int = 1  # 1-based, DICOM's convention


@dataclass(frozen=True)
class Finding:
    """A label's score and what the operating point made of it."""

    label: str
    score: float
    threshold: float | None = None
    operating_point: str | None = None
    positive: bool = False
    critical: bool = False  # positive and listed as a critical finding


@dataclass(frozen=True)
class Box:
    """A detected region: (x0, y0) top-left, (x1, y1) bottom-right, in pixels."""

    label: str
    score: float
    image: ImageRef
    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True)
class Measurement:
    """A measured value with its UCUM unit, optionally tied to an image."""

    name: str
    value: float
    unit: str
    image: ImageRef | None = None


def headline_key(finding: Finding) -> tuple[bool, bool, bool, float]:
    """Orders findings for the headline (the largest is it)."""
    return (finding.critical, finding.positive, finding.threshold is not None, finding.score)


@dataclass
class Prediction:
    """Everything one model run produced for one study.

    Attributes
    ----------
    findings
        One per output label (classification; detection and segmentation summarise
        their regions as findings too), the headline first.
    images
        The source images in the order the model saw them.
    key_image
        The image that best shows the result (highest score, largest region).
    heatmap
        For classifiers: attribution over ``key_image``, float32 in [0, 1], shape
        (rows, columns) of that image.
    masks
        Segmentation: label -> bool array (frames, rows, cols) over ``images``.
    enhanced
        Enhancement: the output image stack (frames, rows, cols) in the source's
        stored-value range and dtype.
    input_stats
        Summary of what the network was given (mean, std and percentiles of the input
        arrays, after the manifest's windowing and normalisation): the image statistics
        drift monitoring compares against the validation data.
    embedding
        Where the manifest declares one: the network's penultimate-layer features,
        averaged over the study's samples (float32, one axis), for embedding drift.
    """

    task: str
    findings: list[Finding] = field(default_factory=list)
    images: list[ImageRef] = field(default_factory=list)
    key_image: ImageRef | None = None
    heatmap: npt.NDArray[np.float32] | None = None
    boxes: list[Box] = field(default_factory=list)
    masks: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    enhanced: npt.NDArray[Any] | None = None
    input_stats: dict[str, float] = field(default_factory=dict)
    embedding: npt.NDArray[np.float32] | None = None

    @property
    def headline(self) -> Finding | None:
        """The finding the worklist shows: critical first, then positive, then a label with
        an operating point (what the model screens for), then score."""
        if not self.findings:
            return None
        return max(self.findings, key=headline_key)

    def check(self) -> None:
        """Refuse output that must not reach a radiologist.

        Raises
        ------
        ModelError
            On NaN or infinite scores or values, scores outside [0, 1], or a heatmap
            or mask whose shape does not fit the images.
        """
        for finding in self.findings:
            if not math.isfinite(finding.score):
                raise ModelError(f"model returned a non-finite score for {finding.label!r}")
            if not 0.0 <= finding.score <= 1.0:
                raise ModelError(
                    f"model returned score {finding.score} for {finding.label!r}, outside [0, 1]"
                )
        for box in self.boxes:
            coords = (box.score, box.x0, box.y0, box.x1, box.y1)
            if not all(math.isfinite(v) for v in coords):
                raise ModelError(f"model returned a non-finite box for {box.label!r}")
        for m in self.measurements:
            if not math.isfinite(m.value):
                raise ModelError(f"model returned a non-finite measurement {m.name!r}")
        if self.heatmap is not None and not np.all(np.isfinite(self.heatmap)):
            raise ModelError("the heatmap holds non-finite values")
        enhanced = self.enhanced
        floating = enhanced is not None and np.issubdtype(enhanced.dtype, np.floating)
        if floating and enhanced is not None and not np.all(np.isfinite(enhanced)):
            raise ModelError("the enhanced image holds non-finite values")
        for label, mask in self.masks.items():
            if mask.ndim != 3 or mask.shape[0] != len(self.images):
                raise ModelError(
                    f"mask {label!r} has shape {mask.shape}; expected one frame per image "
                    f"({len(self.images)})"
                )

    def summary(self) -> dict[str, Any]:
        """JSON-ready details for ``results.details`` (no pixel arrays)."""
        return {
            "task": self.task,
            "findings": [vars(f) for f in self.findings],
            "boxes": [
                {**{k: v for k, v in vars(b).items() if k != "image"}, "image": vars(b.image)}
                for b in self.boxes
            ],
            "measurements": [
                {
                    "name": m.name,
                    "value": m.value,
                    "unit": m.unit,
                    "image": vars(m.image) if m.image else None,
                }
                for m in self.measurements
            ],
            "masks": {label: int(mask.sum()) for label, mask in self.masks.items()},
            "key_image": vars(self.key_image) if self.key_image else None,
            "images": len(self.images),
            "input_stats": dict(self.input_stats),
        }
