"""From a study's DICOM instances to the arrays a network takes.

The steps, in order (``docs/models.md`` explains each choice):

1. decode each frame and apply its modality transform (rescale or Modality LUT);
2. scale to [0, 1]: through ``input.window`` (modality units) when the manifest gives one,
   else by the image's own minimum and maximum (the volume's, for 3D models);
3. invert MONOCHROME1 so that high means bright, as in MONOCHROME2;
4. colour to grey (ITU-R BT.601 luma) for models that take one channel; grey repeated
   into every channel otherwise;
5. resize to ``input.size`` (stretch, letterbox with ``keep_aspect``, or resample to
   ``input.spacing_mm`` and centre), see :mod:`radpilot.models.geometry`;
6. ``(x - normalize_mean) / normalize_std``.

2D models see every frame of every instance as one sample; 3D models see the series as one
volume, slices sorted along the slice normal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from radpilot.core.errors import ModelError
from radpilot.core.logging import ref
from radpilot.models.geometry import Placement, place, plan
from radpilot.models.manifest import InputSpec
from radpilot.models.pixels import Frame, frames_of
from radpilot.models.prediction import ImageRef

__all__ = ["Intensity", "Sample", "prepare", "sort_slices"]

_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class Intensity:
    """How one image's stored values became [0, 1], so that it can be undone."""

    low: float  # modality value mapped to 0
    high: float  # modality value mapped to 1
    invert: bool  # MONOCHROME1
    slope: float
    intercept: float
    dtype: np.dtype[Any]
    invertible: bool  # false for colour images and Modality LUT Sequences

    def to_stored(self, unit: npt.NDArray[np.float32]) -> npt.NDArray[Any]:
        """Values in [0, 1] back to stored pixel values of the source dtype.

        Raises
        ------
        ModelError
            If the source image's intensity transform cannot be inverted.
        """
        if not self.invertible:
            raise ModelError(
                "this image's intensity transform (colour, or a Modality LUT Sequence) "
                "cannot be undone; enhancement models take greyscale, linearly rescaled images"
            )
        values = np.asarray(unit, dtype=np.float64)
        if self.invert:
            values = 1.0 - values
        modality = self.low + values * (self.high - self.low)
        stored = np.rint((modality - self.intercept) / self.slope)
        if np.issubdtype(self.dtype, np.integer):
            info = np.iinfo(self.dtype)
            stored = np.clip(stored, info.min, info.max)
        return stored.astype(self.dtype)


@dataclass
class Sample:
    """One network input and what is needed to bring its output back to the source.

    Attributes
    ----------
    images
        The source images: one for a 2D sample, the sorted slices for a 3D volume.
    array
        ``(channels, *input.size)`` float32, normalised.
    placement
        How the source grid sits on the network grid.
    intensities
        One per image.
    """

    images: list[ImageRef]
    array: npt.NDArray[np.float32]
    placement: Placement
    intensities: list[Intensity]


def _unit_range(values: npt.NDArray[np.float64], spec: InputSpec) -> tuple[float, float]:
    if spec.window is not None:
        return (
            spec.window.center - spec.window.width / 2,
            spec.window.center + spec.window.width / 2,
        )
    return float(values.min()), float(values.max())


def _to_unit(
    values: npt.NDArray[np.float64], low: float, high: float, invert: bool
) -> npt.NDArray[np.float64]:
    span = high - low
    unit = np.clip((values - low) / span, 0.0, 1.0) if span > 0 else np.zeros_like(values)
    return 1.0 - unit if invert else unit


def _rgb_planes(unit: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """A colour frame (rows, cols, 3) in [0, 1] as (3, rows, cols) float32, for a
    3-channel network (grey, and colour into fewer channels: :func:`_unit_volume`)."""
    return np.moveaxis(unit, -1, 0).astype(np.float32)


def _channels(planes: npt.NDArray[np.float32], channels: int) -> npt.NDArray[np.float32]:
    """Repeat a single plane to the network's channels."""
    if planes.shape[0] == channels:
        return planes
    return np.repeat(planes, channels, axis=0)


def _intensity(frame: Frame, low: float, high: float) -> Intensity:
    return Intensity(
        low=low,
        high=high,
        invert=frame.monochrome1,
        slope=frame.slope,
        intercept=frame.intercept,
        dtype=frame.stored_dtype,
        invertible=not frame.colour and not frame.modality_lut,
    )


def _normalise(array: npt.NDArray[np.float32], spec: InputSpec) -> npt.NDArray[np.float32]:
    """``array`` normalised in place (a fresh float32 array the caller made)."""
    array -= np.float32(spec.normalize_mean)
    array /= np.float32(spec.normalize_std)
    return array


def _spacing_of(frame: Frame, spec: InputSpec) -> tuple[float, ...] | None:
    if spec.spacing_mm is None:
        return None
    if frame.pixel_spacing is None:
        raise ModelError(
            f"the model resamples to {spec.spacing_mm} mm but image "
            f"{ref(frame.ref.sop_instance_uid)} has no valid Pixel Spacing"
        )
    return frame.pixel_spacing


def _prepare_2d(frames: list[Frame], spec: InputSpec) -> list[Sample]:
    samples = []
    for frame in frames:
        low, high = _unit_range(frame.values, spec)
        if frame.colour and spec.channels == 3:
            planes = _rgb_planes(_to_unit(frame.values, low, high, frame.monochrome1))
        else:
            planes = _unit_volume([frame], low, high)  # (1, rows, cols), one allocation
        placement = plan(
            planes.shape[1:],
            spec.size,
            keep_aspect=spec.keep_aspect,
            source_spacing=_spacing_of(frame, spec),
            target_spacing=spec.spacing_mm,
        )
        # Resampling is linear with weights summing to one, so it commutes with the affine
        # normalisation and with repeating a plane: do both on the network's grid, not on
        # the full-size image (a 1024 x 1024 radiograph into 3 x 224 x 224: 60x fewer pixels).
        placed = _normalise(_channels(place(planes, placement, fill=0.0), spec.channels), spec)
        samples.append(Sample([frame.ref], placed, placement, [_intensity(frame, low, high)]))
    return samples


def sort_slices(frames: list[Frame]) -> list[Frame]:
    """Frames in slice order: by position along the slice normal, else Instance Number."""
    first = frames[0]
    if first.orientation is not None and all(f.position is not None for f in frames):
        row, col = np.array(first.orientation[:3]), np.array(first.orientation[3:])
        normal = np.cross(row, col)
        return sorted(frames, key=lambda f: float(np.dot(normal, f.position or (0, 0, 0))))
    if all(f.instance_number is not None for f in frames):
        return sorted(frames, key=lambda f: (f.instance_number or 0, f.ref.frame))
    return frames


def _volume_spacing(frames: list[Frame]) -> tuple[float, ...] | None:
    if frames[0].pixel_spacing is None:
        return None
    between = frames[0].slice_spacing
    if frames[0].orientation is not None and all(f.position is not None for f in frames):
        normal = np.cross(frames[0].orientation[:3], frames[0].orientation[3:])
        along = np.array([np.dot(normal, f.position or (0, 0, 0)) for f in frames])
        steps = np.abs(np.diff(along))
        steps = steps[steps > 1e-6]
        if steps.size:
            between = float(np.median(steps))
    return (between or 1.0, *frames[0].pixel_spacing)


def _prepare_3d(frames: list[Frame], spec: InputSpec) -> Sample:
    series = {f.ref.series_instance_uid for f in frames}
    if len(series) > 1:
        raise ModelError(
            f"a 3D model takes one series; {len(series)} were selected; "
            "narrow the routing rule's series selection"
        )
    shapes = {f.values.shape for f in frames}
    if len(shapes) > 1:
        raise ModelError(f"the slices differ in size ({sorted(shapes)}); cannot stack a volume")
    frames = sort_slices(frames)
    low, high = _volume_range(frames, spec)
    array = _unit_volume(frames, low, high)[None]
    if spec.channels > 1:
        array = np.repeat(array, spec.channels, axis=0)
    spacing = _volume_spacing(frames)
    if spec.spacing_mm is not None and spacing is None:
        raise ModelError(f"the model resamples to {spec.spacing_mm} mm; the series has no spacing")
    placement = plan(
        array.shape[1:],
        spec.size,
        keep_aspect=spec.keep_aspect,
        source_spacing=spacing if spec.spacing_mm is not None else None,
        target_spacing=spec.spacing_mm,
    )
    fill = float((0.0 - spec.normalize_mean) / spec.normalize_std)
    placed = place(_normalise(array, spec), placement, fill=fill)
    intensities = [_intensity(f, low, high) for f in frames]
    return Sample([f.ref for f in frames], placed, placement, intensities)


def _volume_range(frames: list[Frame], spec: InputSpec) -> tuple[float, float]:
    """:func:`_unit_range` of the whole series, without stacking it."""
    if spec.window is not None:
        return _unit_range(frames[0].values, spec)
    return (
        float(min(f.values.min() for f in frames)),
        float(max(f.values.max() for f in frames)),
    )


def _unit_volume(frames: list[Frame], low: float, high: float) -> npt.NDArray[np.float32]:
    """The slices scaled to [0, 1] (:func:`_to_unit`) in one float32 volume, filled in
    place: the series-sized temporaries of stacking float64 slices cost more in page
    faults than the arithmetic."""
    first = frames[0].values
    volume = np.empty((len(frames), *first.shape[:2]), dtype=np.float32)
    span = high - low
    for index, frame in enumerate(frames):
        values = frame.values
        out = volume[index]
        if values.ndim == 3:  # colour: the luma of the scaled channels
            out[...] = _to_unit(values, low, high, frame.monochrome1) @ _LUMA
            continue
        if span > 0:
            np.subtract(values, low, out=out, casting="same_kind")
            out /= np.float32(span)
            np.clip(out, 0.0, 1.0, out=out)
        else:
            out.fill(0.0)
        if frame.monochrome1:
            np.subtract(np.float32(1.0), out, out=out)
    return volume


def _order_2d(frames: list[Frame]) -> list[Frame]:
    return sorted(
        frames,
        key=lambda f: (
            f.ref.series_instance_uid,
            f.instance_number if f.instance_number is not None else 0,
            f.ref.sop_instance_uid,
            f.ref.frame,
        ),
    )


def prepare(datasets: Sequence[Dataset], spec: InputSpec) -> list[Sample]:
    """The network inputs for one study's selected instances (any order).

    Returns
    -------
    list of Sample
        One per frame for 2D models (ordered by series, Instance Number, UID, frame);
        exactly one for 3D models.

    Raises
    ------
    ModelError
        If there is no image, an instance cannot be decoded, a 3D model gets several
        series or slices of different sizes, or spacing is needed and missing.
    """
    frames = [frame for ds in datasets for frame in frames_of(ds)]
    if not frames:
        raise ModelError("no image to analyse: the selected series hold no instances")
    if spec.dimensions == 3:
        return [_prepare_3d(frames, spec)]
    return _prepare_2d(_order_2d(frames), spec)
