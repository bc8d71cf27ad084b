"""One frame of an instance as an 8-bit picture: what viewers and WADO-RS ``rendered`` show.

The stored values go through the Modality LUT (rescale or LUT sequence, per frame for
enhanced objects, via :func:`radpilot.models.pixels.frame_of`, which decodes that frame
only), then the VOI window: the one asked for, else the instance's first Window Center /
Width, else the frame's range;
the linear function of PS3.3 C.11.2.1.2. MONOCHROME1 is inverted after windowing, so
that "white" is what the modality means by it. Colour frames are returned as stored
(8-bit) or scaled to 8 bits.
"""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from radpilot.models.pixels import frame_of

__all__ = ["encode", "render_frame", "window_of"]


def _first(value: object) -> float:
    if isinstance(value, list | tuple | MultiValue):
        value = value[0] if len(value) else None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def window_of(ds: Dataset, values: npt.NDArray[np.float64]) -> tuple[float, float]:
    """The instance's first window (center, width), else the frame's value range."""
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if np.isfinite(center) and np.isfinite(width) and width >= 1:
        return center, width
    low, high = float(values.min()), float(values.max())
    return (low + high) / 2, max(high - low, 1.0)


def render_frame(
    ds: Dataset, frame: int = 1, window: tuple[float, float] | None = None
) -> npt.NDArray[np.uint8]:
    """Frame ``frame`` (1-based) as uint8, ``(rows, cols)`` or ``(rows, cols, 3)``.

    Raises
    ------
    IndexError
        If the instance has no such frame.
    radpilot.core.errors.ModelError
        If the pixel data cannot be decoded.
    """
    chosen = frame_of(ds, frame)  # IndexError if there is no such frame
    values = chosen.values
    if chosen.colour:
        top = 255.0 if values.max() <= 255 else float(values.max())
        return np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
    center, width = window or window_of(ds, values)
    unit = np.clip((values - (center - 0.5)) / (width - 1 if width > 1 else 1) + 0.5, 0.0, 1.0)
    if chosen.monochrome1:
        unit = 1.0 - unit
    return np.rint(unit * 255.0).astype(np.uint8)


def encode(picture: npt.NDArray[np.uint8], media_type: str = "image/png") -> bytes:
    """PNG (lossless, the default) or JPEG bytes of ``picture``."""
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.fromarray(picture)
    if media_type == "image/jpeg":
        image.save(buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()
