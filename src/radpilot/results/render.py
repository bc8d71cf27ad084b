"""Turning a stored image into display pixels, and drawing on them (for key images).

Windowing follows PS3.3 C.11.2.1.2 (modality LUT, then the image's own first VOI window
or VOI LUT, else its minimum and maximum; MONOCHROME1 inverted), so the key image looks
as the source does in a viewer. Resampling is plain numpy (linear for grey values and
heatmaps, nearest for masks); no image library is needed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi

from radpilot.results.context import ResultError

__all__ = ["RGB", "Float", "contour", "display_rgb", "draw_rectangle", "resample", "resize_mask"]

Float = npt.NDArray[np.float64]
RGB = npt.NDArray[np.uint8]


def _minmax(values: Float) -> Float:
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def _first(value: Any) -> float:
    return float(value[0] if isinstance(value, MultiValue | list | tuple) else value)


def _window(values: Float, ds: Dataset) -> Float:
    """Values scaled to [0, 1] through the image's first window (PS3.3 C.11.2.1.2)."""
    center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    if width <= 1.0:
        return (values > center - 0.5).astype(np.float64)
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def _grey(frame: npt.NDArray[Any], ds: Dataset) -> Float:
    values = np.asarray(apply_modality_lut(frame, ds), dtype=np.float64)
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center not in (None, "") and width not in (None, "") and _first(width) > 0:
        scaled = _window(values, ds)
    elif "VOILUTSequence" in ds:
        scaled = _minmax(np.asarray(apply_voi(values, ds), dtype=np.float64))
    else:
        scaled = _minmax(values)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        scaled = 1.0 - scaled
    return scaled


def display_rgb(ds: Dataset, frame: int = 1) -> RGB:
    """One frame of ``ds`` as 8-bit RGB, windowed as a viewer would show it.

    Parameters
    ----------
    ds
        An image with pixel data (any transfer syntax pydicom can decode).
    frame
        1-based frame number.

    Returns
    -------
    numpy.ndarray
        uint8 array (rows, columns, 3).

    Raises
    ------
    ResultError
        If the pixel data cannot be decoded or has a photometric interpretation
        radpilot cannot display.
    """
    try:
        pixels = ds.pixel_array  # pydicom converts YBR to RGB
    except Exception as exc:  # decoders raise many types; all mean "cannot decode"
        raise ResultError(
            f"cannot decode the key image's pixel data ({type(exc).__name__}); "
            "install the pylibjpeg plugins for compressed transfer syntaxes"
        ) from exc
    frames = int(ds.get("NumberOfFrames") or 1)
    samples = int(ds.get("SamplesPerPixel") or 1)
    if frames > 1:
        pixels = pixels[frame - 1]
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        grey = np.rint(_grey(pixels, ds) * 255.0).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if photometric == "PALETTE COLOR":
        colour = np.asarray(apply_color_lut(pixels, ds), dtype=np.float64)
        return np.rint(_minmax(colour) * 255.0).astype(np.uint8)
    if samples == 3:
        bits = int(ds.get("BitsStored") or 8)
        scaled = np.asarray(pixels, dtype=np.float64) / float(2**bits - 1)
        return np.rint(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ResultError(
        f"cannot display photometric interpretation {photometric!r}; choose another key image"
    )


def _axis(n_in: int, n_out: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], Float]:
    position = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    position = np.clip(position, 0.0, n_in - 1.0)
    low = np.floor(position).astype(np.intp)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, position - low


def resample(values: npt.NDArray[Any], rows: int, columns: int) -> Float:
    """Linear resampling of the first two axes to (rows, columns)."""
    data = np.asarray(values, dtype=np.float64)
    low, high, weight = _axis(data.shape[0], rows)
    shape = (-1,) + (1,) * (data.ndim - 1)
    data = data[low] * (1.0 - weight.reshape(shape)) + data[high] * weight.reshape(shape)
    low, high, weight = _axis(data.shape[1], columns)
    shape = (1, -1) + (1,) * (data.ndim - 2)
    return data[:, low] * (1.0 - weight.reshape(shape)) + data[:, high] * weight.reshape(shape)


def resize_mask(mask: npt.NDArray[np.bool_], rows: int, columns: int) -> npt.NDArray[np.bool_]:
    """Nearest-neighbour resampling of a 2D mask."""
    r = np.minimum((np.arange(rows) + 0.5) * mask.shape[0] / rows, mask.shape[0] - 1)
    c = np.minimum((np.arange(columns) + 0.5) * mask.shape[1] / columns, mask.shape[1] - 1)
    return np.asarray(mask[r.astype(np.intp)][:, c.astype(np.intp)], dtype=bool)


def contour(mask: npt.NDArray[np.bool_], width: int = 2) -> npt.NDArray[np.bool_]:
    """The pixels of ``mask`` within ``width`` pixels of its edge."""
    inner = mask.copy()
    for _ in range(width):
        padded = np.pad(inner, 1, constant_values=False)
        inner = inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def draw_rectangle(
    image: RGB,
    x0: float,
    y0: float,
    x1: float,
    y1: float,
    colour: tuple[int, int, int],
    width: int = 2,
) -> None:
    """Draw a rectangle outline into ``image`` in place (pixel coordinates, clipped)."""
    rows, columns = image.shape[:2]
    left, right = sorted((x0, x1))
    top, bottom = sorted((y0, y1))
    c0 = max(0, min(columns - 1, math.floor(left)))
    c1 = max(0, min(columns - 1, math.ceil(right)))
    r0 = max(0, min(rows - 1, math.floor(top)))
    r1 = max(0, min(rows - 1, math.ceil(bottom)))
    image[r0 : min(r0 + width, r1 + 1), c0 : c1 + 1] = colour
    image[max(r1 - width + 1, r0) : r1 + 1, c0 : c1 + 1] = colour
    image[r0 : r1 + 1, c0 : min(c0 + width, c1 + 1)] = colour
    image[r0 : r1 + 1, max(c1 - width + 1, c0) : c1 + 1] = colour
