"""Controlled perturbations of synthetic images, each with its parameters recorded.

Each perturbation is a pure function of an :class:`~radpilot.data.synth_image.ImageState`
(stored pixel values plus the header values that describe them) and returns a new state
and the parameters it used, drawn ones included (crop offsets, streak angles), so the
manifest can say exactly what was done. The intensity perturbations are here; those that
move or mark pixels are in :mod:`radpilot.data.synth_perturb_spatial`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

from radpilot.data.synth_image import (
    CT_FULL_DOSE_NOISE_HU,
    ImageState,
    Param,
    Photometric,
    Result,
    number,
)
from radpilot.data.synth_ops import gaussian_blur
from radpilot.data.synth_perturb_spatial import (
    burned_in_text,
    crop,
    metal_streaks,
    resolution,
    rotation,
)

__all__ = ["Applied", "PerturbationName", "PerturbationSpec", "apply_perturbations"]

_PHOTONS_FULL_DOSE = 10_000  # per radiograph pixel, for Poisson (quantum) noise


class PerturbationName(StrEnum):
    """The perturbations ``radpilot synth --perturb`` knows."""

    NOISE = "noise"
    BLUR = "blur"
    LOW_DOSE = "low-dose"
    CONTRAST = "contrast"
    WINDOW_SHIFT = "window-shift"
    ROTATION = "rotation"
    CROP = "crop"
    RESOLUTION = "resolution"
    MONOCHROME1 = "monochrome1"
    BURNED_IN_TEXT = "burned-in-text"
    METAL_STREAKS = "metal-streaks"


@dataclass(frozen=True)
class PerturbationSpec:
    """A perturbation asked for: its name and optional value (``NAME[=VALUE]``)."""

    name: PerturbationName
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> PerturbationSpec:
        """Parse ``noise``, ``blur=2``, ``burned-in-text=PORTABLE``.

        Raises
        ------
        ValueError
            If the name is not a known perturbation.
        """
        name, sep, value = text.strip().partition("=")
        try:
            kind = PerturbationName(name.strip().lower())
        except ValueError:
            known = ", ".join(p.value for p in PerturbationName)
            raise ValueError(f"unknown perturbation {name!r}; use one of: {known}") from None
        return cls(kind, value.strip() if sep else None)


@dataclass(frozen=True)
class Applied:
    """A perturbation as applied, with every parameter that determined it."""

    name: PerturbationName
    params: dict[str, Param] = field(default_factory=dict)

    def describe(self) -> str:
        """``name(key=value, ...)`` for DerivationDescription."""
        inner = ",".join(f"{k}={v}" for k, v in self.params.items() if not isinstance(v, list))
        return f"{self.name.value}({inner})"


def noise(state: ImageState, value: str | None, rng: np.random.Generator) -> Result:
    """Additive Gaussian noise; value: sigma in rescaled units (default 80, CT 20 HU).

    Raises
    ------
    ValueError
        If ``value`` is not a number in the allowed range.
    """
    sigma = number(value, 20.0 if state.ct else 80.0, 0.0, 2000.0, "noise sigma")
    pixels = state.clipped(state.pixels + rng.normal(0.0, sigma, state.pixels.shape))
    return replace(state, pixels=pixels), {"sigma": sigma}


def blur(state: ImageState, value: str | None, rng: np.random.Generator) -> Result:
    """In-plane Gaussian blur; value: sigma in mm (default 1.5).

    Raises
    ------
    ValueError
        If ``value`` is not a number in the allowed range.
    """
    sigma_mm = number(value, 1.5, 0.01, 100.0, "blur sigma (mm)")
    sigma_px = sigma_mm / state.spacing_mm
    pixels = gaussian_blur(state.pixels, sigma_px)
    return replace(state, pixels=pixels), {"sigma_mm": sigma_mm, "sigma_px": round(sigma_px, 4)}


def low_dose(state: ImageState, value: str | None, rng: np.random.Generator) -> Result:
    """Quantum noise of a lower dose; value: fraction of the full dose (default 0.25).

    Radiographs: Poisson counts of a log-attenuation image; CT: noise grows as
    1/sqrt(dose) from the phantom's full-dose noise.

    Raises
    ------
    ValueError
        If ``value`` is not a number in the allowed range.
    """
    fraction = number(value, 0.25, 0.001, 1.0, "dose fraction")
    if state.ct:
        added = CT_FULL_DOSE_NOISE_HU * math.sqrt(1.0 / fraction - 1.0)
        pixels = state.clipped(state.pixels + rng.normal(0.0, added, state.pixels.shape))
        return replace(state, pixels=pixels), {
            "dose_fraction": fraction,
            "added_sigma_hu": round(added, 3),
        }
    k, top = 3.0, float(state.max_value)
    attenuation = state.pixels / top
    if state.photometric is Photometric.MONOCHROME1:
        attenuation = 1.0 - attenuation
    photons = _PHOTONS_FULL_DOSE * fraction
    counts = np.maximum(rng.poisson(photons * np.exp(-k * attenuation)), 1)
    noisy = -np.log(counts / photons) / k
    if state.photometric is Photometric.MONOCHROME1:
        noisy = 1.0 - noisy
    pixels = state.clipped(noisy * top)
    return replace(state, pixels=pixels), {"dose_fraction": fraction, "photons": photons}


def contrast(state: ImageState, value: str | None, rng: np.random.Generator) -> Result:
    """Contrast scaled about the window centre; value: factor (default 0.6).

    Raises
    ------
    ValueError
        If ``value`` is not a number in the allowed range.
    """
    factor = number(value, 0.6, 0.05, 5.0, "contrast factor")
    about = state.window_center - state.intercept
    pixels = state.clipped(about + factor * (state.pixels - about))
    return replace(state, pixels=pixels), {"factor": factor, "about": round(about, 3)}


def window_shift(state: ImageState, value: str | None, rng: np.random.Generator) -> Result:
    """WindowCenter moved by a fraction of WindowWidth; value: fraction (default 0.2).

    Raises
    ------
    ValueError
        If ``value`` is not a number in the allowed range.
    """
    fraction = number(value, 0.2, -2.0, 2.0, "window shift (fraction of width)")
    center = round(state.window_center + fraction * state.window_width, 3)
    return replace(state, window_center=center), {"fraction": fraction, "window_center": center}


def monochrome1(state: ImageState, value: str | None, rng: np.random.Generator) -> Result:
    """Stored values inverted and MONOCHROME1: the same picture, the other encoding.

    Raises
    ------
    ValueError
        For CT, whose stored values must keep mapping to HU through the rescale.
    """
    if state.ct:
        raise ValueError("monochrome1 applies to radiographs (CR, DX); CT stays MONOCHROME2")
    top = float(state.max_value)
    inverted = (
        Photometric.MONOCHROME2
        if state.photometric is Photometric.MONOCHROME1
        else Photometric.MONOCHROME1
    )
    return replace(
        state,
        pixels=top - state.pixels,
        photometric=inverted,
        window_center=top - state.window_center,
        fill=top - state.fill,
    ), {"photometric": inverted.value}


_FUNCTIONS: dict[PerturbationName, Callable[[ImageState, str | None, np.random.Generator], Result]]
_FUNCTIONS = {
    PerturbationName.NOISE: noise,
    PerturbationName.BLUR: blur,
    PerturbationName.LOW_DOSE: low_dose,
    PerturbationName.CONTRAST: contrast,
    PerturbationName.WINDOW_SHIFT: window_shift,
    PerturbationName.ROTATION: rotation,
    PerturbationName.CROP: crop,
    PerturbationName.RESOLUTION: resolution,
    PerturbationName.MONOCHROME1: monochrome1,
    PerturbationName.BURNED_IN_TEXT: burned_in_text,
    PerturbationName.METAL_STREAKS: metal_streaks,
}


def apply_perturbations(
    state: ImageState, specs: Sequence[PerturbationSpec], rng: np.random.Generator
) -> tuple[ImageState, list[Applied]]:
    """Apply ``specs`` in order; the state after them and what each did.

    Raises
    ------
    ValueError
        If a value is out of range or a perturbation does not apply to this image.
    """
    applied = []
    for spec in specs:
        state, params = _FUNCTIONS[spec.name](state, spec.value, rng)
        applied.append(Applied(spec.name, params))
    return state, applied
