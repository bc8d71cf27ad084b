"""Derived series for enhancement models: new instances with the model's pixels."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from radpilot.models.prediction import Prediction
from radpilot.results.context import ResultError
from radpilot.results.derived import build_derived_series
from tests.results_helpers import (
    ct_series,
    data_store_file,
    dciodvfy_errors,
    make_ctx,
    pydicom_file,
    ref_of,
    write,
)


def _encoded(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _denoised(sources: list[Dataset]) -> Prediction:
    """A stand-in for a denoiser: a 3x3 box blur of each image, in the source's dtype."""
    frames = []
    for ds in sources:
        pixels = ds.pixel_array.astype(float)
        padded = np.pad(pixels, 1, mode="edge")
        blurred = (
            sum(
                padded[1 + dy : 1 + dy + pixels.shape[0], 1 + dx : 1 + dx + pixels.shape[1]]
                for dy in (-1, 0, 1)
                for dx in (-1, 0, 1)
            )
            / 9.0
        )
        frames.append(np.rint(blurred).astype(ds.pixel_array.dtype))
    return Prediction(
        task="enhancement", images=[ref_of(ds) for ds in sources], enhanced=np.stack(frames)
    )


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_derived_instance_holds_the_enhanced_pixels(name: str, tmp_path: Path) -> None:
    source = pydicom_file(name)
    before = _encoded(source)
    prediction = _denoised([source])
    ctx = make_ctx(task="enhancement", operating_point=None)
    [derived] = build_derived_series(prediction, [source], ctx)
    path = write(derived, tmp_path / "derived.dcm")
    back = pydicom.dcmread(path)
    assert prediction.enhanced is not None
    assert np.array_equal(back.pixel_array, prediction.enhanced[0])
    assert back.pixel_array.dtype == source.pixel_array.dtype
    assert (back.BitsAllocated, back.BitsStored) == (source.BitsAllocated, source.BitsStored)
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert back.SOPClassUID == source.SOPClassUID
    assert back.SOPInstanceUID == ctx.uid("derived", 0) != source.SOPInstanceUID
    assert back.SeriesInstanceUID == ctx.uid("derived-series") != source.SeriesInstanceUID
    assert back.StudyInstanceUID == source.StudyInstanceUID
    assert back.SeriesNumber == 9004
    assert list(back.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "chest-xr 1.2.0" in back.DerivationDescription
    assert back.SeriesDescription.startswith("AI-processed")
    assert back.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert back.ContributingEquipmentSequence[-1].DeviceSerialNumber == ctx.weights_sha256
    assert _encoded(source) == before  # the original is untouched
    assert dciodvfy_errors(path) == []


def test_series_gets_one_instance_per_slice_with_its_source() -> None:
    series = ct_series()
    pixels_before = [ds.pixel_array.copy() for ds in series]
    prediction = _denoised(series)
    ctx = make_ctx()
    derived = build_derived_series(prediction, series, ctx)
    assert len(derived) == len(series)
    assert [d.SOPInstanceUID for d in derived] == [ctx.uid("derived", i) for i in range(5)]
    assert {d.SeriesInstanceUID for d in derived} == {ctx.uid("derived-series")}
    for d, source, enhanced, before in zip(
        derived, series, prediction.enhanced, pixels_before, strict=True
    ):
        assert d.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert d.InstanceNumber == source.InstanceNumber
        assert d.ImagePositionPatient == source.ImagePositionPatient
        assert np.array_equal(pydicom.dcmread(io.BytesIO(_encoded(d))).pixel_array, enhanced)
        assert np.array_equal(source.pixel_array, before)
    again = build_derived_series(prediction, series, make_ctx())
    assert [d.SOPInstanceUID for d in again] == [d.SOPInstanceUID for d in derived]


def test_compressed_source_gives_uncompressed_copy() -> None:
    source = pydicom_file("MR_small_jp2klossless.dcm")
    prediction = _denoised([source])
    [derived] = build_derived_series(prediction, [source], make_ctx())
    back = pydicom.dcmread(io.BytesIO(_encoded(derived)))
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert back.LossyImageCompression == "00"
    assert prediction.enhanced is not None
    assert np.array_equal(back.pixel_array, prediction.enhanced[0])


def test_multi_frame_source_gives_one_multi_frame_instance() -> None:
    source = data_store_file("emri_small.dcm")  # 10 frames
    frames = source.pixel_array
    images = [ref_of(source, f) for f in range(1, 11)]
    enhanced = (frames // 2).astype(frames.dtype)
    # frames given out of order: the copy must still hold frame n at position n
    order = [3, 1, 0, 2, 4, 5, 6, 7, 9, 8]
    prediction = Prediction(
        task="enhancement", images=[images[i] for i in order], enhanced=enhanced[order]
    )
    [derived] = build_derived_series(prediction, [source], make_ctx())
    back = pydicom.dcmread(io.BytesIO(_encoded(derived)))
    assert back.NumberOfFrames == 10
    assert np.array_equal(back.pixel_array, enhanced)
    assert [item.ReferencedFrameNumber for item in back.SourceImageSequence] == list(range(1, 11))


def test_values_outside_the_source_range_are_refused() -> None:
    source = pydicom_file("MR_small.dcm")  # unsigned 16-bit
    prediction = _denoised([source])
    assert prediction.enhanced is not None
    prediction.enhanced = prediction.enhanced.astype(np.float32) - 1e6
    with pytest.raises(ResultError, match="range"):
        build_derived_series(prediction, [source], make_ctx())


def test_float_output_is_rounded_to_the_source_dtype() -> None:
    source = pydicom_file("CT_small.dcm")  # signed 16-bit
    stored = source.pixel_array
    prediction = Prediction(
        task="enhancement", images=[ref_of(source)], enhanced=(stored[None] + 0.4).astype(float)
    )
    [derived] = build_derived_series(prediction, [source], make_ctx())
    assert np.array_equal(pydicom.dcmread(io.BytesIO(_encoded(derived))).pixel_array, stored)


def test_missing_enhanced_image_or_frames_are_refused() -> None:
    series = ct_series()
    with pytest.raises(ResultError, match="no enhanced image"):
        build_derived_series(
            Prediction(task="enhancement", images=[ref_of(series[0])]), series, make_ctx()
        )
    source = data_store_file("emri_small.dcm")
    partial = Prediction(
        task="enhancement",
        images=[ref_of(source, 1), ref_of(source, 2)],
        enhanced=source.pixel_array[:2],
    )
    with pytest.raises(ResultError, match="every frame"):
        build_derived_series(partial, [source], make_ctx())
