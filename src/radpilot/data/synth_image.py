"""The image a perturbation works on: stored values and what gives them meaning."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from radpilot.data.synth_ops import Affine

__all__ = ["CT_FULL_DOSE_NOISE_HU", "ImageState", "Param", "Photometric", "Result", "number"]

#: Noise of the CT phantom at full dose (HU); low-dose adds noise relative to it.
CT_FULL_DOSE_NOISE_HU = 10.0

#: A recorded parameter value (JSON-ready).
Param = float | int | str | list[float]


class Photometric(StrEnum):
    """Photometric Interpretation defined terms for grey-scale images."""

    MONOCHROME1 = "MONOCHROME1"  # low values bright
    MONOCHROME2 = "MONOCHROME2"  # low values dark


@dataclass(frozen=True)
class ImageState:
    """Stored pixel values and the header values that give them meaning."""

    pixels: npt.NDArray[np.float64]  # (rows, columns) or (slices, rows, columns)
    spacing_mm: float  # in-plane, square pixels
    window_center: float  # in rescaled units (HU for CT)
    window_width: float
    ct: bool = False
    max_value: int = 4095
    intercept: float = 0.0  # rescaled = stored + intercept
    fill: float = 0.0  # stored value of "nothing there" (outside the field, air)
    photometric: Photometric = Photometric.MONOCHROME2
    burned_in: bool = False
    masks: tuple[npt.NDArray[np.bool_], ...] = ()  # ground truth, moved with the pixels
    grid: Affine = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # (row, column) -> original grid

    @property
    def white(self) -> float:
        """The stored value displayed brightest."""
        return float(self.max_value) if self.photometric is Photometric.MONOCHROME2 else 0.0

    def clipped(self, pixels: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """``pixels`` clipped to the stored range."""
        return np.clip(pixels, 0.0, float(self.max_value))


#: What a perturbation returns: the new state and the parameters it used.
Result = tuple[ImageState, dict[str, Param]]


def number(value: str | None, default: float, low: float, high: float, what: str) -> float:
    """``value`` as a number in [low, high], ``default`` when not given.

    Raises
    ------
    ValueError
        If ``value`` is not a number or out of range; the message names ``what``.
    """
    if value is None or value == "":
        return default
    try:
        parsed = float(value)
    except ValueError:
        raise ValueError(f"{what} must be a number, not {value!r}") from None
    if not low <= parsed <= high or not math.isfinite(parsed):
        raise ValueError(f"{what} must be between {low:g} and {high:g}, not {parsed:g}")
    return parsed
