"""How a source image grid maps onto the network's input grid, and back.

Every axis is mapped by ``net = source * scale + offset`` in continuous pixel coordinates,
where ``0`` is the outer edge of the first pixel and pixel ``i`` covers ``[i, i + 1)`` (the
convention of DICOM SR SCOORD and of ``torch.nn.functional.interpolate`` with
``align_corners=False``). A plain resize has ``offset = 0``; a letterbox (``keep_aspect``)
or a resampling to a fixed spacing followed by a centred crop or pad has an offset. Going
forward uses torch (antialiased when shrinking 2D images); going back is separable 1D
interpolation in numpy, which needs no dense sampling grid even for large volumes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 - the name every torch user knows

__all__ = ["Placement", "place", "plan", "to_source"]

Mode = Literal["nearest", "linear"]


@dataclass(frozen=True)
class Placement:
    """The per-axis affine map from a source grid to the network grid.

    Attributes
    ----------
    source_shape
        ``(rows, cols)`` or ``(slices, rows, cols)`` of the source.
    net_shape
        The network input's spatial shape, same length.
    scale
        Network pixels per source pixel, per axis.
    offset
        Network coordinate of the source's outer edge, per axis (letterbox padding
        is positive, a centred crop negative).
    """

    source_shape: tuple[int, ...]
    net_shape: tuple[int, ...]
    scale: tuple[float, ...]
    offset: tuple[float, ...]

    @property
    def content_shape(self) -> tuple[int, ...]:
        """The source's size once resized, before it is padded or cropped."""
        return tuple(round(n * s) for n, s in zip(self.source_shape, self.scale, strict=True))

    def covered(self, spatial: Sequence[int]) -> tuple[slice, ...]:
        """The part of a grid of shape ``spatial`` (the network grid, or an output grid
        covering the same field of view) that holds the source image."""
        parts = []
        for axis, size in enumerate(spatial):
            ratio = size / self.net_shape[axis]
            start = self.offset[axis] * ratio
            stop = start + self.source_shape[axis] * self.scale[axis] * ratio
            lo = min(max(0, math.floor(start)), size - 1)
            parts.append(slice(lo, max(lo + 1, min(size, math.ceil(stop)))))
        return tuple(parts)

    def point_to_source(self, x: float, y: float) -> tuple[float, float]:
        """A network-input (column, row) point in source (column, row) coordinates."""
        col = (x - self.offset[-1]) / self.scale[-1]
        row = (y - self.offset[-2]) / self.scale[-2]
        return col, row


def plan(
    source_shape: Sequence[int],
    net_shape: Sequence[int],
    *,
    keep_aspect: bool = False,
    source_spacing: Sequence[float] | None = None,
    target_spacing: Sequence[float] | None = None,
) -> Placement:
    """Decide how a source grid is brought to ``net_shape``.

    With ``target_spacing`` (and the source's own spacing), the source is resampled to
    that spacing and centred, cropped or padded, so that a pixel keeps its physical size.
    Else it is stretched to ``net_shape``, or with ``keep_aspect`` scaled by one factor
    and letterboxed.
    """
    src = tuple(int(v) for v in source_shape)
    net = tuple(int(v) for v in net_shape)
    if target_spacing is not None and source_spacing is not None:
        wanted = [s / t for s, t in zip(source_spacing, target_spacing, strict=True)]
    elif keep_aspect:
        factor = min(n / s for n, s in zip(net, src, strict=True))
        wanted = [factor] * len(src)
    else:
        wanted = [n / s for n, s in zip(net, src, strict=True)]
    content = [max(1, round(s * w)) for s, w in zip(src, wanted, strict=True)]
    scale = tuple(c / s for c, s in zip(content, src, strict=True))
    offset = tuple(float((n - c) // 2) for n, c in zip(net, content, strict=True))
    return Placement(src, net, scale, offset)


def place(
    array: npt.NDArray[np.float32], placement: Placement, fill: float = 0.0
) -> npt.NDArray[np.float32]:
    """Resize ``array`` (channels, *source_shape) and put it on the network grid.

    Returns
    -------
    numpy.ndarray
        ``(channels, *net_shape)`` float32; pixels outside the source hold ``fill``.
    """
    content = placement.content_shape
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    if content != placement.source_shape:
        if len(content) == 2:
            shrinking = any(c < s for c, s in zip(content, placement.source_shape, strict=True))
            tensor = F.interpolate(
                tensor, size=content, mode="bilinear", align_corners=False, antialias=shrinking
            )
        else:
            tensor = F.interpolate(tensor, size=content, mode="trilinear", align_corners=False)
    resized = tensor[0].numpy()
    if content == placement.net_shape and not any(placement.offset):
        return np.ascontiguousarray(resized, dtype=np.float32)
    out = np.full((array.shape[0], *placement.net_shape), fill, dtype=np.float32)
    dst_index: list[slice] = [slice(None)]
    src_index: list[slice] = [slice(None)]
    for off, c, n in zip(placement.offset, content, placement.net_shape, strict=True):
        start = int(off)
        lo, hi = max(0, start), min(n, start + c)
        dst_index.append(slice(lo, hi))
        src_index.append(slice(lo - start, hi - start))
    out[tuple(dst_index)] = resized[tuple(src_index)]
    return out


def _axis_positions(size: int, scale: float, offset: float) -> npt.NDArray[np.float64]:
    """Network index coordinates (pixel centres at integers) of each source pixel centre."""
    centres = (np.arange(size, dtype=np.float64) + 0.5) * scale + offset
    return centres - 0.5


def _resample_axis(
    array: npt.NDArray[np.float32], axis: int, positions: npt.NDArray[np.float64], mode: Mode
) -> npt.NDArray[np.float32]:
    n = array.shape[axis]
    inside = (positions >= -0.5) & (positions <= n - 0.5)
    shape = [1] * array.ndim
    shape[axis] = len(positions)
    if mode == "nearest":
        index = np.clip(np.floor(positions + 0.5), 0, n - 1).astype(np.intp)
        out = np.take(array, index, axis=axis)
    else:
        clamped = np.clip(positions, 0, n - 1)
        low = np.floor(clamped).astype(np.intp)
        high = np.minimum(low + 1, n - 1)
        weight = (clamped - low).astype(np.float32).reshape(shape)
        out = (
            np.take(array, low, axis=axis) * (1 - weight) + np.take(array, high, axis=axis) * weight
        )
    return np.where(inside.reshape(shape), out, np.float32(0)).astype(np.float32)


def to_source(
    array: npt.NDArray[np.float32], placement: Placement, mode: Mode = "linear"
) -> npt.NDArray[np.float32]:
    """Bring a network-grid array (channels, *spatial) back onto the source grid.

    An array whose spatial shape differs from the network input (a network that outputs
    at a lower resolution) is first taken to cover the same field of view.

    Returns
    -------
    numpy.ndarray
        ``(channels, *source_shape)`` float32; source pixels that fell outside the
        network grid (cropped away) are 0.
    """
    out = np.asarray(array, dtype=np.float32)
    spatial = out.shape[1:]
    for axis, size in enumerate(placement.source_shape):
        ratio = spatial[axis] / placement.net_shape[axis]
        scale = placement.scale[axis] * ratio
        offset = placement.offset[axis] * ratio
        positions = _axis_positions(size, scale, offset)
        out = _resample_axis(out, axis + 1, positions, mode)
    return out
