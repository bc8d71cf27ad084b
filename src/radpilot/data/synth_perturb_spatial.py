"""Perturbations that move or mark pixels: rotation, crop, resolution, burned-in text, metal.

Rotation and crop move the ground-truth masks with the pixels and compose the in-plane
map back to the original grid (``ImageState.grid``), from which CT slices get their
ImagePositionPatient and ImageOrientationPatient.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from radpilot.data.synth_font import render_text
from radpilot.data.synth_image import ImageState, Param, Result, number
from radpilot.data.synth_ops import Affine, compose, gaussian_blur, line_distance, resample

__all__ = ["burned_in_text", "crop", "metal_streaks", "resolution", "rotation"]


def _regrid(state: ImageState, local: Affine, shape: tuple[int, int]) -> ImageState:
    pixels = resample(state.pixels, local, shape, state.fill).astype(np.float64)
    masks = tuple(resample(m, local, shape, 0.0, nearest=True).astype(bool) for m in state.masks)
    return replace(state, pixels=pixels, masks=masks, grid=compose(state.grid, local))


def rotation(state: ImageState, value: str | None, rng: np.random.Generator) -> Result:
    """In-plane rotation about the centre, counter-clockwise; value: degrees (default 10).

    Raises
    ------
    ValueError
        If ``value`` is not a number in the allowed range.
    """
    degrees = number(value, 10.0, -180.0, 180.0, "rotation (degrees)")
    rows, cols = state.pixels.shape[-2:]
    rc, cc = (rows - 1) / 2, (cols - 1) / 2
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    local: Affine = (cos, sin, rc - cos * rc - sin * cc, -sin, cos, cc + sin * rc - cos * cc)
    return _regrid(state, local, (rows, cols)), {"degrees": degrees}


def crop(state: ImageState, value: str | None, rng: np.random.Generator) -> Result:
    """Keep a part of the image (anywhere); value: fraction of each side (default 0.8).

    Raises
    ------
    ValueError
        If ``value`` is not a number in the allowed range.
    """
    fraction = number(value, 0.8, 0.2, 1.0, "crop fraction")
    rows, cols = state.pixels.shape[-2:]
    new_rows, new_cols = max(1, round(rows * fraction)), max(1, round(cols * fraction))
    top = int(rng.integers(0, rows - new_rows + 1))
    left = int(rng.integers(0, cols - new_cols + 1))
    local: Affine = (1.0, 0.0, float(top), 0.0, 1.0, float(left))
    cropped = _regrid(state, local, (new_rows, new_cols))
    return cropped, {"fraction": fraction, "top": top, "left": left}


def resolution(state: ImageState, value: str | None, rng: np.random.Generator) -> Result:
    """A coarser matrix over the same field, as from a detector with larger pixels; value:
    the scale of each side (default 0.5: a quarter of the pixels).

    The image is low-pass filtered first (Gaussian, sigma half the new pixel size, in old
    pixels), then resampled; Pixel Spacing grows accordingly. Radiographs only: a CT
    series keeps its matrix here.

    Raises
    ------
    ValueError
        If ``value`` is not a number in the allowed range, or the image is a CT slice.
    """
    if state.ct:
        raise ValueError("resolution applies to radiographs; a CT series keeps its matrix")
    scale = number(value, 0.5, 0.05, 1.0, "resolution scale")
    rows, cols = state.pixels.shape[-2:]
    new_rows, new_cols = max(1, round(rows * scale)), max(1, round(cols * scale))
    step_r, step_c = rows / new_rows, cols / new_cols
    smoothed = (
        replace(state, pixels=gaussian_blur(state.pixels, 0.5 * step_r)) if scale < 1 else state
    )
    local: Affine = (step_r, 0.0, (step_r - 1) / 2, 0.0, step_c, (step_c - 1) / 2)
    coarse = replace(_regrid(smoothed, local, (new_rows, new_cols)),
                     spacing_mm=state.spacing_mm * step_r)  # fmt: skip
    return coarse, {"scale": scale, "rows": new_rows, "columns": new_cols}


def burned_in_text(state: ImageState, value: str | None, rng: np.random.Generator) -> Result:
    """Text drawn into the pixels (every slice) in a random corner; value: the text.

    Drawn in the brightest displayed value, 7 pixels high for every 160 rows (at least 7),
    so that detectors of burned-in annotation have something to find.

    Raises
    ------
    ValueError
        If the text holds characters the font lacks or does not fit the image.
    """
    text = value or "PORTABLE"
    rows, cols = state.pixels.shape[-2:]
    scale = max(1, rows // 160)
    bitmap = render_text(text, scale)
    margin = max(1, rows // 50)
    if bitmap.shape[0] + 2 * margin > rows or bitmap.shape[1] + 2 * margin > cols:
        raise ValueError(f"text {text!r} does not fit a {rows} x {cols} image; use less text")
    top = margin if rng.random() < 0.5 else rows - margin - bitmap.shape[0]
    left = margin if rng.random() < 0.5 else cols - margin - bitmap.shape[1]
    pixels = state.pixels.copy()
    box = pixels[..., top : top + bitmap.shape[0], left : left + bitmap.shape[1]]
    box[..., bitmap] = state.white
    bottom, right = top + bitmap.shape[0], left + bitmap.shape[1]
    params: dict[str, Param] = {
        "text": text.upper(),
        "top": top,
        "left": left,
        "bottom": bottom,
        "right": right,
    }
    return replace(state, pixels=pixels, burned_in=True), params


def metal_streaks(state: ImageState, value: str | None, rng: np.random.Generator) -> Result:
    """Metal: radiographs get bright wires, CT a metal disc with bright streaks across it.

    Value: number of lines (default 6). CT: on the slices of a band around a random
    level, 3000 HU in the disc, streaks of +800 HU fading over the slice.

    Raises
    ------
    ValueError
        If ``value`` is not a number in the allowed range.
    """
    count = int(number(value, 6, 1, 64, "number of metal streaks"))
    rows, cols = state.pixels.shape[-2:]
    row = float(rng.uniform(0.3, 0.7) * (rows - 1))
    column = float(rng.uniform(0.3, 0.7) * (cols - 1))
    angles = sorted(round(float(a), 2) for a in rng.uniform(0.0, 180.0, count))
    pixels = state.pixels.copy()
    params: dict[str, Param] = {"count": count, "row": round(row, 2), "column": round(column, 2)}
    params["angles"] = angles
    if not state.ct:
        half = 0.15 * max(rows, cols)
        rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        near = np.hypot(rr - row, cc - column) <= half
        for angle in angles:
            wire = (line_distance((rows, cols), row, column, angle) <= 0.75) & near
            pixels[..., wire] = state.white
        return replace(state, pixels=pixels), params
    slices = pixels.shape[0]
    band = max(1, slices // 8)
    first = int(rng.integers(0, slices - band + 1))
    radius = max(1.0, 6.0 / state.spacing_mm)
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    distance = np.hypot(rr - row, cc - column)
    streaks = np.zeros((rows, cols))
    for angle in angles:
        profile = np.exp(-((line_distance((rows, cols), row, column, angle) / 0.8) ** 2))
        streaks += 800.0 * profile * np.exp(-distance / (0.5 * max(rows, cols)))
    metal = distance <= radius
    selected = pixels[first : first + band] + streaks
    selected[:, metal] = 3000.0 - state.intercept
    pixels[first : first + band] = state.clipped(selected)
    params.update(first_slice=first, slices=band, radius_px=round(radius, 3))
    return replace(state, pixels=pixels), params
