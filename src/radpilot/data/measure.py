"""Lesion measurements from a binary mask: volume and longest axial diameter.

Used to check synthetic ground truth (``radpilot synth --kind ct``) and, by the
pipeline, to turn a segmentation into ``Prediction.measurements`` (TID 1500 "Volume"
and "Long Axis", see :meth:`MaskMeasurement.named_values`).

Choices, and why:

- **Volume** is the voxel count times the voxel volume (slice spacing x row spacing x
  column spacing): what a reader's volumetry tool reports for a binary mask, and
  unbiased for shapes large against a voxel.
- **Longest axial diameter** is the largest in-plane Feret (caliper) diameter of the
  mask on an axial slice: the largest distance between the centres of two mask pixels.
  A mask samples the object at pixel centres, so the farthest samples inside it come
  within a pixel of the true diameter from below (on digital discs: 0.15 px short on
  average, never more than 0.7 px). Measuring between the outer edges of boundary
  pixels, as contour-based tools (pyradiomics' Maximum2DDiameterSlice) do, comes out
  0.3 to 1 px long instead. The default takes the longest over all slices, as RECIST
  1.1 measures a lesion in the plane in which it is longest;
  :attr:`DiameterRule.LARGEST_AREA_SLICE` measures only the slice with the largest
  cross-section instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from pydicom import Dataset

__all__ = [
    "DiameterRule",
    "MaskMeasurement",
    "VoxelSpacing",
    "feret_diameter_mm",
    "longest_axial_diameter_mm",
    "mask_volume_ml",
    "measure_mask",
    "spacing_from_datasets",
]


class DiameterRule(StrEnum):
    """Which axial slices the longest diameter is looked for on."""

    ALL_SLICES = "all-slices"
    LARGEST_AREA_SLICE = "largest-area-slice"


@dataclass(frozen=True)
class VoxelSpacing:
    """Voxel size in mm: between slices, between rows, between columns."""

    slice_mm: float
    row_mm: float
    column_mm: float

    def __post_init__(self) -> None:
        for name in ("slice_mm", "row_mm", "column_mm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of mm, not {value}")

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in mL."""
        return self.slice_mm * self.row_mm * self.column_mm / 1000.0


@dataclass(frozen=True)
class MaskMeasurement:
    """What :func:`measure_mask` found."""

    voxels: int
    volume_ml: float
    longest_diameter_mm: float
    slice_index: int  # where the longest diameter was measured (-1 for an empty mask)

    def named_values(self) -> list[tuple[str, float, str]]:
        """(name, value, UCUM unit) pairs for ``Prediction.measurements``.

        ``Volume`` in mL and ``Long Axis`` in mm: names the SR writer codes as SNOMED CT
        concepts (TID 1500).
        """
        return [("Volume", self.volume_ml, "mL"), ("Long Axis", self.longest_diameter_mm, "mm")]


def _check(mask: npt.NDArray[np.bool_], ndim: int) -> npt.NDArray[np.bool_]:
    array = np.asarray(mask)
    if array.ndim != ndim:
        raise ValueError(f"expected a {ndim}-D mask, got shape {array.shape}")
    return array.astype(bool)


def mask_volume_ml(mask: npt.NDArray[np.bool_], spacing: VoxelSpacing) -> float:
    """Volume of a (slices, rows, columns) mask in mL.

    Raises
    ------
    ValueError
        If ``mask`` is not 3-D.
    """
    return int(_check(mask, 3).sum()) * spacing.voxel_ml


def _boundary_points(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """(row, column) of the mask pixels with a 4-neighbour outside the mask."""
    padded = np.pad(mask, 1)
    interior = (
        padded[1:-1, 1:-1]
        & padded[:-2, 1:-1]
        & padded[2:, 1:-1]
        & padded[1:-1, :-2]
        & padded[1:-1, 2:]
    )
    return np.argwhere(mask & ~interior).astype(np.float64)


def _hull(points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Convex hull (Andrew's monotone chain); the diameter's ends are hull vertices."""
    unique = sorted({(float(p[0]), float(p[1])) for p in points})
    if len(unique) < 3:
        return np.array(unique)

    def half(sequence: list[tuple[float, float]]) -> list[tuple[float, float]]:
        chain: list[tuple[float, float]] = []
        for p in sequence:
            while len(chain) >= 2:
                (ax, ay), (bx, by) = chain[-2], chain[-1]
                if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) > 0:
                    break
                chain.pop()
            chain.append(p)
        return chain[:-1]

    return np.array(half(unique) + half(unique[::-1]))


def feret_diameter_mm(mask: npt.NDArray[np.bool_], row_mm: float, column_mm: float) -> float:
    """Largest distance between two pixel centres of a 2-D mask, in mm (0 if empty).

    Raises
    ------
    ValueError
        If ``mask`` is not 2-D.
    """
    mask = _check(mask, 2)
    if not mask.any():
        return 0.0
    hull = _hull(_boundary_points(mask)) * np.array([row_mm, column_mm])
    differences = hull[:, None, :] - hull[None, :, :]
    return float(np.sqrt((differences**2).sum(axis=-1)).max())


def longest_axial_diameter_mm(
    mask: npt.NDArray[np.bool_],
    spacing: VoxelSpacing,
    rule: DiameterRule | str = DiameterRule.ALL_SLICES,
) -> tuple[float, int]:
    """Longest in-plane diameter of a (slices, rows, columns) mask and its slice index.

    Raises
    ------
    ValueError
        If ``mask`` is not 3-D or ``rule`` is unknown.
    """
    mask, rule = _check(mask, 3), DiameterRule(rule)
    areas = mask.sum(axis=(1, 2))
    if not areas.any():
        return 0.0, -1
    if rule is DiameterRule.LARGEST_AREA_SLICE:
        index = int(np.argmax(areas))
        return feret_diameter_mm(mask[index], spacing.row_mm, spacing.column_mm), index
    best, where = 0.0, -1
    for found in np.nonzero(areas)[0]:
        diameter = feret_diameter_mm(mask[found], spacing.row_mm, spacing.column_mm)
        if diameter > best:
            best, where = diameter, int(found)
    return best, where


def measure_mask(
    mask: npt.NDArray[np.bool_],
    spacing: VoxelSpacing,
    rule: DiameterRule | str = DiameterRule.ALL_SLICES,
) -> MaskMeasurement:
    """Volume and longest axial diameter of a (slices, rows, columns) mask.

    Raises
    ------
    ValueError
        If ``mask`` is not 3-D or ``rule`` is unknown.
    """
    diameter, index = longest_axial_diameter_mm(mask, spacing, rule)
    voxels = int(_check(mask, 3).sum())
    return MaskMeasurement(voxels, voxels * spacing.voxel_ml, diameter, index)


def spacing_from_datasets(datasets: Sequence[Dataset]) -> VoxelSpacing:
    """Voxel spacing of a series of single-frame axial images, in the given order.

    The slice spacing is the distance between consecutive ImagePositionPatient along
    the slice normal (SliceThickness for a single image).

    Raises
    ------
    ValueError
        If PixelSpacing or the slice positions are missing, or slices are not evenly
        spaced (sort the series by position first; measure irregular series per slab).
    """
    if not datasets:
        raise ValueError("no images to take the spacing from")
    first = datasets[0]
    if "PixelSpacing" not in first:
        raise ValueError("the images have no PixelSpacing; cannot measure in mm")
    row_mm, column_mm = (float(v) for v in first.PixelSpacing)
    if len(datasets) == 1:
        return VoxelSpacing(float(first.get("SliceThickness") or 1.0), row_mm, column_mm)
    try:
        orientation = np.array([float(v) for v in first.ImageOrientationPatient])
        normal = np.cross(orientation[:3], orientation[3:])
        levels = [
            float(np.dot(normal, [float(v) for v in d.ImagePositionPatient])) for d in datasets
        ]
    except AttributeError as exc:
        raise ValueError(f"the images lack a position or orientation: {exc}") from exc
    steps = np.abs(np.diff(levels))
    if steps.min() <= 0 or steps.max() - steps.min() > 0.01 * steps.max():
        raise ValueError(
            "slices are not evenly spaced; sort the series by ImagePositionPatient and "
            "measure each evenly spaced part separately"
        )
    return VoxelSpacing(float(steps.mean()), row_mm, column_mm)
