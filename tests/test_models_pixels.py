"""One frame of a multi-frame object decoded alone (:func:`frame_of`) equals that frame of
the full decode (:func:`frames_of`), per-frame rescale included, and needs no other frame."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames

from radpilot.core.errors import ModelError
from radpilot.models.pixels import frame_count, frame_of, frames_of


@pytest.mark.parametrize(
    "name",
    [
        "emri_small.dcm",  # 10 frames, native
        "emri_small_jpeg_2k_lossless.dcm",
        "emri_small_RLE.dcm",
        "SC_rgb_rle_2frame.dcm",  # colour
        "CT_small.dcm",  # one frame
    ],
)
def test_one_frame_is_that_frame_of_the_whole(name: str) -> None:
    ds = pydicom.dcmread(get_testdata_file(name))
    every = frames_of(ds)
    assert frame_count(ds) == len(every)
    for number, expected in enumerate(every, start=1):
        alone = frame_of(ds, number)
        assert np.array_equal(alone.values, expected.values)
        assert alone.ref == expected.ref and alone.ref.frame == number
        assert (alone.slope, alone.intercept, alone.colour) == (
            expected.slope,
            expected.intercept,
            expected.colour,
        )
    with pytest.raises(IndexError, match=f"has {len(every)} frame"):
        frame_of(ds, len(every) + 1)


def test_per_frame_rescale_is_the_frames_own() -> None:
    ds = pydicom.dcmread(get_testdata_file("emri_small.dcm"))
    groups = []
    for index in range(frame_count(ds)):
        transform = Dataset()
        transform.RescaleSlope, transform.RescaleIntercept = 1 + index, -100 * index
        transform.RescaleType = "US"
        item = Dataset()
        item.PixelValueTransformationSequence = [transform]
        groups.append(item)
    ds.PerFrameFunctionalGroupsSequence = groups
    stored = ds.pixel_array
    for number in (1, 4, 10):
        frame = frame_of(ds, number)
        assert (frame.slope, frame.intercept) == (number, -100 * (number - 1))
        expected = stored[number - 1].astype(np.float64) * number - 100 * (number - 1)
        assert np.array_equal(frame.values, expected)


def test_other_frames_are_not_decoded() -> None:
    """With the last frame's compressed data broken, the full decode fails and the first
    frame still decodes: only the frame asked for is touched."""
    ds = pydicom.dcmread(get_testdata_file("emri_small_RLE.dcm"))
    frames = list(generate_frames(ds.PixelData, number_of_frames=frame_count(ds)))
    frames[-1] = b"\x01\x00\x00\x00" + b"\x00" * 60 + b"\xff"  # an RLE header, no segment
    ds.PixelData = encapsulate(frames)
    with pytest.raises(ModelError, match="cannot decode the pixel data"):
        frames_of(ds)
    first = frame_of(ds, 1)
    expected = pydicom.dcmread(get_testdata_file("emri_small.dcm")).pixel_array[0]
    assert np.array_equal(first.values, expected.astype(np.float64))
