"""Array operations behind the perturbations: Gaussian blur, affine resampling, lines.

Plain numpy (radpilot does not depend on scipy). Every function works on the last two
axes, so a radiograph (rows, columns) and a CT volume (slices, rows, columns) go through
the same code, each slice with the same in-plane operation.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["Affine", "compose", "gaussian_blur", "line_distance", "resample"]

#: In-plane affine map (a, b, t_r, c, d, t_c): r' = a r + b c + t_r; c' = c r + d c + t_c.
Affine = tuple[float, float, float, float, float, float]


def _blur_axis(values: npt.NDArray[np.float64], sigma: float, axis: int) -> npt.NDArray[np.float64]:
    radius = max(1, math.ceil(3 * sigma))
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (taps / sigma) ** 2)
    weights /= weights.sum()
    pad = [(0, 0)] * values.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(values, pad, mode="edge")
    length = values.shape[axis]
    out = np.zeros_like(values)
    window: list[slice] = [slice(None)] * values.ndim
    for k, w in enumerate(weights):
        window[axis] = slice(k, k + length)
        out += w * padded[tuple(window)]
    return out


def gaussian_blur(values: npt.NDArray[np.float64], sigma_px: float) -> npt.NDArray[np.float64]:
    """Separable Gaussian blur over the last two axes (edges repeat the border pixel).

    Raises
    ------
    ValueError
        If ``sigma_px`` is not positive.
    """
    if sigma_px <= 0:
        raise ValueError(f"blur sigma must be positive, not {sigma_px}")
    blurred = _blur_axis(values.astype(np.float64), sigma_px, values.ndim - 1)
    return _blur_axis(blurred, sigma_px, values.ndim - 2)


def compose(outer: Affine, inner: Affine) -> Affine:
    """The map ``outer(inner(x))``."""
    a, b, tr, c, d, tc = outer
    e, f, ur, g, h, uc = inner
    return (
        a * e + b * g,
        a * f + b * h,
        a * ur + b * uc + tr,
        c * e + d * g,
        c * f + d * h,
        c * ur + d * uc + tc,
    )


def resample(
    values: npt.NDArray[np.float64] | npt.NDArray[np.bool_],
    to_source: Affine,
    shape: tuple[int, int],
    fill: float,
    *,
    nearest: bool = False,
) -> npt.NDArray[np.float64] | npt.NDArray[np.bool_]:
    """Sample ``values`` on a new in-plane grid of ``shape``.

    ``to_source`` maps an output (row, column) to the (row, column) of ``values`` it
    shows; points outside ``values`` get ``fill``. Bilinear, or nearest neighbour (for
    masks, which keep their dtype). A whole-pixel shift is a plain slice.
    """
    a, b, tr, c, d, tc = to_source
    height, width = values.shape[-2:]
    shift = (
        (a, b, c, d) == (1.0, 0.0, 0.0, 1.0) and float(tr).is_integer() and float(tc).is_integer()
    )
    top_row, left = int(tr), int(tc)
    if shift and 0 <= top_row <= height - shape[0] and 0 <= left <= width - shape[1]:
        return values[..., top_row : top_row + shape[0], left : left + shape[1]].copy()
    rows, cols = np.meshgrid(
        np.arange(shape[0], dtype=np.float64), np.arange(shape[1], dtype=np.float64), indexing="ij"
    )
    src_r = a * rows + b * cols + tr
    src_c = c * rows + d * cols + tc
    flat = values.reshape(*values.shape[:-2], height * width)

    def gather(r: npt.NDArray[np.int_], col: npt.NDArray[np.int_]) -> npt.NDArray[np.float64]:
        index = (np.clip(r, 0, height - 1) * width + np.clip(col, 0, width - 1)).ravel()
        taken: npt.NDArray[np.float64] = np.take(flat, index, axis=-1)
        return taken.reshape(*values.shape[:-2], *shape)

    if nearest:
        r0, c0 = np.rint(src_r).astype(int), np.rint(src_c).astype(int)
        inside = (r0 >= 0) & (r0 < height) & (c0 >= 0) & (c0 < width)
        return np.where(inside, gather(r0, c0), values.dtype.type(fill))
    inside = (src_r >= 0) & (src_r <= height - 1) & (src_c >= 0) & (src_c <= width - 1)
    r0 = np.floor(src_r).astype(int)
    c0 = np.floor(src_c).astype(int)
    wr, wc = np.clip(src_r - r0, 0, 1), np.clip(src_c - c0, 0, 1)
    top = gather(r0, c0) * (1 - wc) + gather(r0, c0 + 1) * wc
    bottom = gather(r0 + 1, c0) * (1 - wc) + gather(r0 + 1, c0 + 1) * wc
    return np.where(inside, top * (1 - wr) + bottom * wr, fill)


def line_distance(
    shape: tuple[int, int], row: float, column: float, degrees: float
) -> npt.NDArray[np.float64]:
    """Distance in pixels of every pixel to the line through (row, column) at ``degrees``.

    The angle is measured from the column axis towards the top of the image.
    """
    theta = math.radians(degrees)
    rows, cols = np.meshgrid(
        np.arange(shape[0], dtype=np.float64), np.arange(shape[1], dtype=np.float64), indexing="ij"
    )
    # unit direction (d_row, d_col) = (-sin, cos); distance = |cross product|
    return np.abs((rows - row) * math.cos(theta) + (cols - column) * math.sin(theta))
