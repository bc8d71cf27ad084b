"""Forward placement and the way back agree, for any shapes, letterbox, crop or pad."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.ndimage import binary_erosion

from radpilot.models.geometry import place, plan, to_source

sizes = st.integers(min_value=8, max_value=160)


@settings(max_examples=60, deadline=None)
@given(
    source=st.tuples(sizes, sizes),
    net=st.tuples(sizes, sizes),
    mode=st.sampled_from(["stretch", "letterbox", "spacing"]),
    spacing=st.tuples(st.floats(0.3, 2.0), st.floats(0.3, 2.0)),
)
# Found by CI: a crop in spacing mode; the pixels next to the crop edge are interpolated
# with the uncovered (zero) outside and must not count as "inside".
@example(source=(11, 95), net=(8, 45), mode="spacing", spacing=(1.0, 0.546875))
def test_a_ramp_comes_back_where_it_was(
    source: tuple[int, int], net: tuple[int, int], mode: str, spacing: tuple[float, float]
) -> None:
    """Place a ramp of source column (and row) numbers on the network grid and bring it
    back: away from the edges, every source pixel finds its own coordinate again."""
    rows, cols = np.meshgrid(np.arange(source[0]), np.arange(source[1]), indexing="ij")
    ramps = np.stack([rows, cols]).astype(np.float32) + 1.0  # 0 means "not covered"
    placement = plan(
        source,
        net,
        keep_aspect=mode == "letterbox",
        source_spacing=spacing if mode == "spacing" else None,
        target_spacing=(1.0, 1.0) if mode == "spacing" else None,
    )
    back = to_source(place(ramps, placement), placement)
    for axis in (0, 1):
        scale = placement.scale[axis]
        margin = math.ceil(2 / min(scale, 1.0)) + 1
        interior = [slice(margin, n - margin) for n in source]
        got = back[axis][tuple(interior)]
        want = ramps[axis][tuple(interior)]
        # Covered, and as far from a crop edge as from the image edge: interpolation
        # near a crop edge mixes in the zeros outside.
        covered = binary_erosion(back[0] > 0, np.ones((2 * margin + 1,) * 2), border_value=1)
        inside = covered[tuple(interior)]
        if inside.any():
            tolerance = max(0.51, 0.51 / scale)  # half a network pixel, in source pixels
            assert np.abs(got - want)[inside].max() <= tolerance + 1e-3


@given(source=st.tuples(sizes, sizes), net=st.tuples(sizes, sizes), letterbox=st.booleans())
def test_points_map_back_exactly(
    source: tuple[int, int], net: tuple[int, int], letterbox: bool
) -> None:
    placement = plan(source, net, keep_aspect=letterbox)
    x, y = 0.37 * source[1], 0.81 * source[0]
    net_x = x * placement.scale[1] + placement.offset[1]
    net_y = y * placement.scale[0] + placement.offset[0]
    back = placement.point_to_source(net_x, net_y)
    assert np.allclose(back, (x, y), atol=1e-9)
    assert all(0 <= o < n for o, n in zip(placement.offset, net, strict=True))
