"""From a DICOM instance to frames of modality values, with where each frame lies.

Handles classic and enhanced (multi-frame) images: the rescale of each frame comes from its
Pixel Value Transformation (per-frame, then shared functional groups) or the top-level
Rescale Slope/Intercept or Modality LUT; its position, orientation and spacing come from
the functional groups or the top-level Image Plane attributes. Colour images (RGB, YBR
decoded to RGB by pydicom, PALETTE COLOR through its lookup table) keep three samples.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut

from radpilot.core.errors import ModelError
from radpilot.core.logging import ref
from radpilot.models.prediction import ImageRef

__all__ = ["Frame", "Photometric", "frame_count", "frame_of", "frames_of"]


class Photometric(enum.StrEnum):
    """Photometric Interpretation (0028,0004) defined terms radpilot reads."""

    MONOCHROME1 = "MONOCHROME1"  # minimum value displayed white
    MONOCHROME2 = "MONOCHROME2"
    RGB = "RGB"
    PALETTE_COLOR = "PALETTE COLOR"
    YBR_FULL = "YBR_FULL"
    YBR_FULL_422 = "YBR_FULL_422"
    YBR_ICT = "YBR_ICT"
    YBR_RCT = "YBR_RCT"
    YBR_PARTIAL_420 = "YBR_PARTIAL_420"


@dataclass(frozen=True)
class Frame:
    """One frame of one instance, in modality units, with its place in the patient.

    Attributes
    ----------
    values
        ``(rows, cols)`` modality values, or ``(rows, cols, 3)`` RGB for colour images.
    stored_dtype
        The dtype pydicom decodes the stored values to (what enhancement writes back).
    slope, intercept
        The linear rescale applied (1 and 0 when there is none).
    modality_lut
        True when a Modality LUT Sequence (not invertible in general) was applied.
    """

    ref: ImageRef
    values: npt.NDArray[np.float64]
    stored_dtype: np.dtype[Any]
    slope: float
    intercept: float
    modality_lut: bool
    monochrome1: bool
    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, ...] | None
    slice_spacing: float | None
    instance_number: int | None

    @property
    def colour(self) -> bool:
        """Whether the frame holds three samples per pixel."""
        return self.values.ndim == 3


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    """``count`` finite floats from a DICOM value, or None when absent or malformed."""
    if value is None:
        return None
    if isinstance(value, str | bytes | int | float):
        items = [value]
    else:
        try:
            items = list(value)
        except TypeError:
            return None
    try:
        numbers = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or not all(np.isfinite(numbers)):
        return None
    return numbers


def _functional(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """The item of functional group ``sequence`` for frame ``index`` (per-frame first)."""
    for groups, position in (
        ("PerFrameFunctionalGroupsSequence", index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        items = ds.get(groups)
        if items is None or len(items) <= position:
            continue
        inner = items[position].get(sequence)
        if inner:
            item: Dataset = inner[0]
            return item
    return None


def _rescale(ds: Dataset, index: int) -> tuple[float, float]:
    item = _functional(ds, index, "PixelValueTransformationSequence") or ds
    slope = _floats(item.get("RescaleSlope"), 1)
    intercept = _floats(item.get("RescaleIntercept"), 1)
    return (slope[0] if slope and slope[0] != 0 else 1.0), (intercept[0] if intercept else 0.0)


def _geometry(
    ds: Dataset, index: int
) -> tuple[
    tuple[float, ...] | None, tuple[float, ...] | None, tuple[float, ...] | None, float | None
]:
    plane = _functional(ds, index, "PlanePositionSequence") or ds
    orient = _functional(ds, index, "PlaneOrientationSequence") or ds
    measures = _functional(ds, index, "PixelMeasuresSequence") or ds
    spacing = _floats(measures.get("PixelSpacing"), 2) or _floats(ds.get("ImagerPixelSpacing"), 2)
    if spacing is not None and min(spacing) <= 0:
        spacing = None
    between = _floats(measures.get("SpacingBetweenSlices"), 1) or _floats(
        measures.get("SliceThickness"), 1
    )
    return (
        _floats(plane.get("ImagePositionPatient"), 3),
        _floats(orient.get("ImageOrientationPatient"), 6),
        spacing,
        abs(between[0]) if between and between[0] != 0 else None,
    )


def _decode(ds: Dataset, uid: str, index: int | None = None) -> npt.NDArray[Any]:
    """All frames, or only frame ``index`` (0-based; pydicom decodes just that one)."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ModelError(f"instance {ref(uid)} has no pixel data; route only image series")
    try:
        if index is None:
            array: npt.NDArray[Any] = ds.pixel_array
        else:
            from pydicom.pixels.utils import pixel_array

            array = pixel_array(ds, index=index)
    except Exception as exc:  # pydicom's decoders raise many types
        reason = " ".join(str(exc).split())[:300]
        raise ModelError(
            f"cannot decode the pixel data of instance {ref(uid)} ({type(exc).__name__}: "
            f"{reason}); the file may be truncated or malformed, or need a codec that is "
            "not installed"
        ) from exc
    return array


def frame_count(ds: Dataset) -> int:
    """How many frames ``ds`` holds (Number of Frames, else 1)."""
    try:
        return max(int(ds.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        return 1


def frame_of(ds: Dataset, number: int) -> Frame:
    """Frame ``number`` (1-based) of ``ds`` in modality units, decoding only that frame
    (a viewer asking for one frame of a 300-frame object does not decode 300).

    Raises
    ------
    IndexError
        If ``ds`` has no such frame.
    ModelError
        If the instance has no pixel data, or the frame cannot be decoded.
    """
    count = frame_count(ds)
    if not 1 <= number <= count:
        raise IndexError(f"the instance has {count} frame(s), not {number}")
    if count == 1:
        return frames_of(ds)[0]
    return frames_of(ds, only=number)[0]


def frames_of(ds: Dataset, only: int | None = None) -> list[Frame]:
    """Every frame of ``ds`` in modality units (with ``only``, a 1-based frame number of
    a multi-frame object: that frame alone, see :func:`frame_of`).

    Raises
    ------
    ModelError
        If the instance has no pixel data, or it cannot be decoded.
    """
    uid = str(ds.get("SOPInstanceUID", ""))
    array = _decode(ds, uid, None if only is None else only - 1)
    frames_count = frame_count(ds)
    samples = int(ds.get("SamplesPerPixel") or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric == Photometric.PALETTE_COLOR:
        array = apply_color_lut(array, ds)
        samples = 3
    if only is not None or frames_count == 1 or array.ndim == (2 if samples == 1 else 3):
        array = array[None]
    first = 0 if only is None else only - 1  # the frame index of array[0]
    stored_dtype = array.dtype
    classic_lut = "ModalityLUTSequence" in ds and samples == 1
    instance_number = _floats(ds.get("InstanceNumber"), 1)
    frames = []
    for offset in range(array.shape[0]):
        raw, index = array[offset], first + offset
        slope, intercept = (1.0, 0.0) if samples != 1 else _rescale(ds, index)
        if classic_lut:
            values = np.asarray(apply_modality_lut(raw, ds), dtype=np.float64)
        else:  # in place: a new array is page faults, which cost more than the arithmetic
            values = raw.astype(np.float64)
            if slope != 1.0:
                values *= slope
            if intercept != 0.0:
                values += intercept
        position, orientation, spacing, between = _geometry(ds, index)
        frames.append(
            Frame(
                ref=ImageRef(
                    sop_instance_uid=uid,
                    sop_class_uid=str(ds.get("SOPClassUID", "")),
                    series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
                    frame=index + 1,
                ),
                values=values,
                stored_dtype=stored_dtype,
                slope=slope,
                intercept=intercept,
                modality_lut=classic_lut,
                monochrome1=photometric == Photometric.MONOCHROME1,
                position=position,
                orientation=orientation,
                pixel_spacing=spacing,
                slice_spacing=between,
                instance_number=int(instance_number[0]) if instance_number else None,
            )
        )
    return frames
