"""DICOM SEG from masks: pixels round-trip, one segment per non-empty label, model named."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset

from radpilot.models.prediction import Prediction
from radpilot.results.context import ResultError
from radpilot.results.seg import build_seg, has_segments
from tests.results_helpers import (
    WEIGHTS_SHA256,
    ct_series,
    data_store_file,
    dciodvfy_errors,
    make_ctx,
    pydicom_file,
    ref_of,
    write,
)


def _masks(frames: int, rows: int, columns: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    liver = np.zeros((frames, rows, columns), dtype=bool)
    liver[1 : frames - 1, rows // 4 : rows // 2, columns // 3 : columns - 2] = True
    lesion = rng.random((frames, rows, columns)) > 0.9
    lesion[0] = False  # a frame with nothing in any segment for this label
    return {"liver": liver, "lesion x": lesion, "empty": np.zeros_like(liver)}


def _prediction(series: list[Dataset]) -> Prediction:
    rows, columns = int(series[0].Rows), int(series[0].Columns)
    return Prediction(
        task="segmentation",
        images=[ref_of(ds) for ds in series],
        masks=_masks(len(series), rows, columns),
    )


def test_seg_pixels_equal_the_masks_and_name_the_model(tmp_path: Path) -> None:
    series = ct_series()
    prediction = _prediction(series)
    ctx = make_ctx(task="segmentation")
    path = write(build_seg(prediction, series, ctx), tmp_path / "seg.dcm")
    seg = hd.seg.segread(path)
    labels = [item.SegmentLabel for item in seg.SegmentSequence]
    assert labels == ["liver", "lesion x"]  # the empty label has no segment
    pixels = seg.get_pixels_by_source_instance(
        [ds.SOPInstanceUID for ds in series], segment_numbers=[1, 2], combine_segments=False
    )
    assert np.array_equal(pixels[..., 0].astype(bool), prediction.masks["liver"])
    assert np.array_equal(pixels[..., 1].astype(bool), prediction.masks["lesion x"])
    for item in seg.SegmentSequence:
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        algorithm = item.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("chest-xr", "1.2.0")
        assert WEIGHTS_SHA256 in algorithm.AlgorithmParameters
        assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    assert seg.StudyInstanceUID == series[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == series[0].FrameOfReferenceUID
    assert seg.SOPInstanceUID == ctx.uid("seg")
    assert seg.SeriesInstanceUID == ctx.uid("seg-series")
    assert seg.SeriesNumber == 9003
    assert seg.DeviceSerialNumber == WEIGHTS_SHA256
    assert seg.SegmentationType == "BINARY"


def test_seg_validates_with_dciodvfy(tmp_path: Path) -> None:
    series = ct_series()
    path = write(build_seg(_prediction(series), series, make_ctx()), tmp_path / "seg.dcm")
    assert dciodvfy_errors(path) == []


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_single_image_seg(name: str, tmp_path: Path) -> None:
    ds = pydicom_file(name)
    mask = np.zeros((1, ds.Rows, ds.Columns), dtype=bool)
    mask[0, 5:20, 10:30] = True
    prediction = Prediction(task="segmentation", images=[ref_of(ds)], masks={"lesion": mask})
    path = write(build_seg(prediction, [ds], make_ctx()), tmp_path / "seg.dcm")
    seg = hd.seg.segread(path)
    pixels = seg.get_pixels_by_source_instance([ds.SOPInstanceUID], combine_segments=False)
    assert np.array_equal(pixels[..., 0].astype(bool), mask)
    assert dciodvfy_errors(path) == []


def test_same_context_same_uid_other_key_other_uid() -> None:
    series = ct_series()
    prediction = _prediction(series)
    first = build_seg(prediction, series, make_ctx())
    assert build_seg(prediction, series, make_ctx()).SOPInstanceUID == first.SOPInstanceUID
    assert build_seg(prediction, series, make_ctx("other")).SOPInstanceUID != first.SOPInstanceUID


def test_no_masks_or_empty_masks_are_refused() -> None:
    series = ct_series()
    with pytest.raises(ResultError, match="no masks"):
        build_seg(
            Prediction(task="segmentation", images=[ref_of(ds) for ds in series]),
            series,
            make_ctx(),
        )
    empty = Prediction(
        task="segmentation",
        images=[ref_of(ds) for ds in series],
        masks={"liver": np.zeros((len(series), 16, 16), dtype=bool)},
    )
    assert not has_segments(empty)
    with pytest.raises(ResultError, match="has_segments"):
        build_seg(empty, series, make_ctx())


def test_mask_of_the_wrong_size_is_refused() -> None:
    series = ct_series()
    prediction = Prediction(
        task="segmentation",
        images=[ref_of(ds) for ds in series],
        masks={"liver": np.ones((len(series), 8, 8), dtype=bool)},
    )
    with pytest.raises(ResultError, match="shape"):
        build_seg(prediction, series, make_ctx())


def test_masks_spanning_two_series_are_refused() -> None:
    ct = pydicom_file("CT_small.dcm")
    other = pydicom_file("CT_small.dcm")
    other.SeriesInstanceUID = "1.2.3.4"
    other.SOPInstanceUID = "1.2.3.4.5"
    prediction = Prediction(
        task="segmentation",
        images=[ref_of(ct), ref_of(other)],
        masks={"x": np.ones((2, ct.Rows, ct.Columns), dtype=bool)},
    )
    with pytest.raises(ResultError, match="several series"):
        build_seg(prediction, [ct, other], make_ctx())


def test_sources_highdicom_cannot_segment_give_a_result_error() -> None:
    # A real enhanced MR without a frame of reference: highdicom refuses it.
    source = data_store_file("emri_small.dcm")
    frames = int(source.NumberOfFrames)
    mask = np.zeros((frames, source.Rows, source.Columns), dtype=bool)
    mask[:, 3:9, 3:9] = True
    prediction = Prediction(
        task="segmentation",
        images=[ref_of(source, f) for f in range(1, frames + 1)],
        masks={"lesion": mask},
    )
    with pytest.raises(ResultError, match="could not build the SEG"):
        build_seg(prediction, [source], make_ctx())
