"""CT phantoms with lesions of known size, as CT Image Storage series with their masks.

A body ellipse (air -1000 HU around it, a subcutaneous fat ring of -100 HU, soft tissue of
40 HU inside, a vertebral body of 700 HU at the back) extends through the whole volume;
spheres and ellipsoids of known centre, semi-axes (mm) and density sit in the soft tissue
without touching each other or the bone. Each lesion's truth is its analytic volume and
longest axial diameter and the same two measured on its voxel mask
(:mod:`radpilot.data.measure`), so a segmentation model's measurements can be checked
against both. Noise of 10 HU (full dose) makes the soft tissue look like CT.
"""

from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
import numpy.typing as npt

from radpilot.data.measure import VoxelSpacing, measure_mask
from radpilot.data.synth_image import CT_FULL_DOSE_NOISE_HU, ImageState

__all__ = ["CtGeometry", "CtOptions", "Lesion", "LesionTruth", "build_phantom", "save_masks"]

HU_AIR, HU_FAT, HU_SOFT_TISSUE, HU_BONE = -1000.0, -100.0, 40.0, 700.0
INTERCEPT = -1024.0  # stored = HU + 1024, 12 bits: -1024 to 3071 HU


@dataclass(frozen=True)
class CtOptions:
    """Size of the CT volume and of its lesions.

    Raises
    ------
    ValueError
        If a size is out of range.
    """

    size: int = 512  # rows and columns
    slices: int = 64
    slice_thickness_mm: float = 2.5  # contiguous slices: spacing = thickness
    fov_mm: float = 400.0  # reconstruction field of view
    lesion_radius_mm: tuple[float, float] = (5.0, 20.0)

    def __post_init__(self) -> None:
        if not 16 <= self.size <= 512:
            raise ValueError(f"CT size must be 16 to 512 pixels, not {self.size}")
        if not 4 <= self.slices <= 2000:
            raise ValueError(f"CT slices must be 4 to 2000, not {self.slices}")
        if not 0.1 <= self.slice_thickness_mm <= 20:
            raise ValueError(f"slice thickness must be 0.1-20 mm, not {self.slice_thickness_mm}")
        if not 50 <= self.fov_mm <= 700:
            raise ValueError(f"field of view must be 50-700 mm, not {self.fov_mm}")
        low, high = self.lesion_radius_mm
        if not 0 < low <= high:
            raise ValueError(f"lesion radius range must be 0 < min <= max, not {low}, {high}")


def _centred(count: int, step: float) -> npt.NDArray[np.float64]:
    return (np.arange(count, dtype=np.float64) - (count - 1) / 2) * step


@dataclass(frozen=True)
class CtGeometry:
    """Voxel grid of the phantom: centred on the patient origin, axial, feet first."""

    rows: int
    columns: int
    slices: int
    spacing_mm: float
    thickness_mm: float

    def x(self) -> npt.NDArray[np.float64]:
        """Patient x (towards the left) of each column centre."""
        return _centred(self.columns, self.spacing_mm)

    def y(self) -> npt.NDArray[np.float64]:
        """Patient y (towards the back) of each row centre."""
        return _centred(self.rows, self.spacing_mm)

    def z(self) -> npt.NDArray[np.float64]:
        """Patient z (towards the head) of each slice centre."""
        return _centred(self.slices, self.thickness_mm)

    @property
    def voxel_spacing(self) -> VoxelSpacing:
        """Spacing as :mod:`radpilot.data.measure` takes it."""
        return VoxelSpacing(self.thickness_mm, self.spacing_mm, self.spacing_mm)


class LesionTruth(TypedDict):
    """One lesion's truth as the manifest records it (JSON)."""

    shape: str
    centre_mm: list[float]  # patient x, y, z (LPS)
    radii_mm: list[float]  # a, b (axial), c (along z)
    angle_deg: float
    hu: float
    volume_ml: float  # analytic
    diameter_mm: float  # analytic longest axial diameter
    mask_voxels: int
    mask_volume_ml: float  # measured on the voxel mask
    mask_diameter_mm: float


@dataclass(frozen=True)
class Lesion:
    """An ellipsoid lesion of known position, size and density.

    Semi-axes a, b lie in the axial plane (a turned by ``angle_deg`` from patient x
    towards y), c along z; all in mm, the centre in patient coordinates (LPS).
    """

    centre_mm: tuple[float, float, float]
    radii_mm: tuple[float, float, float]
    angle_deg: float
    hu: float

    @property
    def shape(self) -> str:
        """``sphere`` or ``ellipsoid``."""
        return "sphere" if len(set(self.radii_mm)) == 1 else "ellipsoid"

    @property
    def volume_ml(self) -> float:
        """4/3 pi a b c, in mL."""
        a, b, c = self.radii_mm
        return 4.0 / 3.0 * math.pi * a * b * c / 1000.0

    @property
    def longest_axial_diameter_mm(self) -> float:
        """2 max(a, b): the longest chord of the largest (central) axial section."""
        return 2.0 * max(self.radii_mm[:2])

    def mask(self, geometry: CtGeometry) -> npt.NDArray[np.bool_]:
        """Voxels whose centre lies inside the ellipsoid."""
        a, b, c = self.radii_mm
        cx, cy, cz = self.centre_mm
        theta = math.radians(self.angle_deg)
        dz = (geometry.z() - cz)[:, None, None]
        dy = (geometry.y() - cy)[None, :, None]
        dx = (geometry.x() - cx)[None, None, :]
        u = dx * math.cos(theta) + dy * math.sin(theta)
        v = -dx * math.sin(theta) + dy * math.cos(theta)
        inside: npt.NDArray[np.bool_] = (u / a) ** 2 + (v / b) ** 2 + (dz / c) ** 2 <= 1.0
        return inside

    def truth(self, mask: npt.NDArray[np.bool_], geometry: CtGeometry) -> LesionTruth:
        """Manifest record: position, size, density; analytic and mask measurements."""
        measured = measure_mask(mask, geometry.voxel_spacing)
        return {
            "shape": self.shape,
            "centre_mm": [round(v, 3) for v in self.centre_mm],
            "radii_mm": [round(v, 3) for v in self.radii_mm],
            "angle_deg": round(self.angle_deg, 3),
            "hu": round(self.hu, 1),
            "volume_ml": round(self.volume_ml, 4),
            "diameter_mm": round(self.longest_axial_diameter_mm, 3),
            "mask_voxels": measured.voxels,
            "mask_volume_ml": round(measured.volume_ml, 4),
            "mask_diameter_mm": round(measured.longest_diameter_mm, 3),
        }


def _body(geometry: CtGeometry, fov: float) -> tuple[npt.NDArray[np.float64], dict[str, float]]:
    """The axial HU map of the body, and the shapes lesions must stay inside."""
    shapes = {"ax": 0.40 * fov, "ay": 0.28 * fov, "fat": 0.035 * fov, "spine_r": 0.045 * fov}
    shapes["inner_ax"], shapes["inner_ay"] = (
        shapes["ax"] - shapes["fat"],
        shapes["ay"] - shapes["fat"],
    )
    shapes["spine_y"] = shapes["inner_ay"] - shapes["spine_r"] - 0.02 * fov
    x, y = np.meshgrid(geometry.x(), geometry.y())
    hu = np.full(x.shape, HU_AIR)
    hu[(x / shapes["ax"]) ** 2 + (y / shapes["ay"]) ** 2 <= 1] = HU_FAT
    hu[(x / shapes["inner_ax"]) ** 2 + (y / shapes["inner_ay"]) ** 2 <= 1] = HU_SOFT_TISSUE
    hu[np.hypot(x, y - shapes["spine_y"]) <= shapes["spine_r"]] = HU_BONE
    return hu, shapes


def _place(
    count: int, options: CtOptions, geometry: CtGeometry, shapes: dict[str, float],
    rng: np.random.Generator,
) -> list[Lesion]:  # fmt: skip
    voxel = max(geometry.spacing_mm, geometry.thickness_mm)
    low = max(options.lesion_radius_mm[0], 2 * voxel)
    z_half = geometry.slices * geometry.thickness_mm / 2
    high = min(options.lesion_radius_mm[1], 0.3 * shapes["inner_ay"], z_half - 2 * voxel)
    if count and low > high:
        raise ValueError(
            f"lesions of radius {low:.1f} mm (two voxels) or more do not fit this volume; use "
            "more slices, a larger size or a smaller field of view"
        )
    margin = 2 * geometry.spacing_mm
    lesions: list[Lesion] = []
    for _ in range(200 * count):
        if len(lesions) == count:
            break
        radii = (
            rng.uniform(low, high, 3) if rng.random() < 0.5 else np.full(3, rng.uniform(low, high))
        )
        a, b, c = (float(r) for r in radii)
        reach = max(a, b)
        room_x, room_y = shapes["inner_ax"] - reach - margin, shapes["inner_ay"] - reach - margin
        room_z = z_half - c - geometry.thickness_mm
        if min(room_x, room_y, room_z) <= 0:
            continue
        cx, cy = (float(v) for v in rng.uniform(-1, 1, 2) * (room_x, room_y))
        cz = float(rng.uniform(-room_z, room_z))
        if (cx / room_x) ** 2 + (cy / room_y) ** 2 > 1:
            continue
        if math.hypot(cx, cy - shapes["spine_y"]) <= reach + shapes["spine_r"] + margin:
            continue
        extent = max(a, b, c)
        if any(
            math.dist((cx, cy, cz), other.centre_mm) <= extent + max(other.radii_mm) + margin
            for other in lesions
        ):
            continue
        contrast = float(rng.uniform(40, 90)) * (1 if rng.random() < 0.5 else -1)
        angle = 0.0 if a == b == c else float(rng.uniform(0, 180))
        lesions.append(Lesion((cx, cy, cz), (a, b, c), angle, HU_SOFT_TISSUE + contrast))
    if len(lesions) < count:
        raise ValueError(
            f"could not place {count} lesions without overlap; ask for fewer lesions "
            "or smaller radii"
        )
    return lesions


def build_phantom(
    options: CtOptions, lesion_count: int, rng: np.random.Generator
) -> tuple[ImageState, CtGeometry, list[Lesion]]:
    """The phantom as stored values (HU + 1024) with one mask per lesion.

    Raises
    ------
    ValueError
        If the lesions do not fit the volume.
    """
    spacing = round(options.fov_mm / options.size, 6)
    geometry = CtGeometry(
        options.size, options.size, options.slices, spacing, options.slice_thickness_mm
    )
    body, shapes = _body(geometry, options.fov_mm)
    lesions = _place(lesion_count, options, geometry, shapes, rng)
    hu = np.broadcast_to(body, (geometry.slices, *body.shape)).copy()
    masks = tuple(lesion.mask(geometry) for lesion in lesions)
    for lesion, mask in zip(lesions, masks, strict=True):
        hu[mask] = lesion.hu
    hu += rng.normal(0.0, CT_FULL_DOSE_NOISE_HU, hu.shape)
    stored = np.clip(hu - INTERCEPT, 0, 4095)
    state = ImageState(
        stored,
        spacing_mm=spacing,
        window_center=40,
        window_width=400,
        ct=True,
        intercept=INTERCEPT,
        fill=HU_AIR - INTERCEPT,
        masks=masks,
    )
    return state, geometry, lesions


def save_masks(
    path: Path, masks: list[npt.NDArray[np.bool_]], uids: list[str], shape: tuple[int, ...]
) -> None:
    """Write the lesion masks (lesion, slice, row, column) and the slices' SOP Instance UIDs.

    An ``.npz`` that ``numpy.load`` reads; fixed zip timestamps make it byte-stable.
    ``shape`` is one mask's (slice, row, column) shape, needed when there are none.
    """
    arrays = {
        "masks": np.stack(masks) if masks else np.zeros((0, *shape), dtype=bool),
        "sop_instance_uids": np.array(uids),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())
