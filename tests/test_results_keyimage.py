"""Key image (Secondary Capture): windowed source, heatmap/boxes/contours, AI banner."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from radpilot.models.prediction import Box, Finding, Prediction
from radpilot.results.context import ResultError
from radpilot.results.keyimage import MAX_SIZE, banner_lines, build_key_image, render_key_image
from tests.results_helpers import (
    data_store_file,
    dciodvfy_errors,
    make_ctx,
    pydicom_file,
    ref_of,
    write,
)


def _prediction(ds: Dataset, with_heatmap: bool = True) -> Prediction:
    """A hot square in the top-left quarter, a box in the bottom-right, a mask in between."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    image = ref_of(ds)
    heatmap = np.zeros((rows, columns), dtype=np.float32)
    heatmap[rows // 8 : rows * 3 // 8, columns // 8 : columns * 3 // 8] = 1.0
    mask = np.zeros((1, rows, columns), dtype=bool)
    mask[0, rows // 2 : rows * 5 // 8, columns // 8 : columns // 4] = True
    return Prediction(
        task="classification",
        findings=[Finding("pneumonia", 0.87, 0.31, "high-sensitivity", positive=True)],
        images=[image],
        key_image=image,
        heatmap=heatmap if with_heatmap else None,
        boxes=[Box("nodule", 0.7, image, columns * 0.6, rows * 0.6, columns * 0.8, rows * 0.9)],
        masks={"lesion": mask},
    )


@pytest.fixture(scope="module")
def ct() -> Dataset:
    return pydicom_file("CT_small.dcm")


def test_key_image_is_a_labelled_rgb_secondary_capture(ct: Dataset, tmp_path: Path) -> None:
    ctx = make_ctx()
    sc = pydicom.dcmread(write(build_key_image(_prediction(ct), [ct], ctx), tmp_path / "k.dcm"))
    assert sc.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert sc.PhotometricInterpretation == "RGB"
    assert (sc.SamplesPerPixel, sc.BitsAllocated) == (3, 8)
    assert max(sc.Rows, sc.Columns) <= MAX_SIZE
    assert sc.BurnedInAnnotation == "YES"
    assert list(sc.ImageType) == ["DERIVED", "SECONDARY"]
    assert sc.ConversionType == "WSD"
    assert sc.SeriesDescription == "AI chest-xr 1.2.0"
    assert sc.SeriesNumber == 9002
    assert sc.SOPInstanceUID == ctx.uid("sc")
    assert sc.StudyInstanceUID == ct.StudyInstanceUID
    assert sc.PatientID == ct.PatientID
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == ct.SOPInstanceUID
    assert "1.2.0" in sc.DerivationDescription
    assert sc.pixel_array.shape == (sc.Rows, sc.Columns, 3)


def test_banner_names_model_finding_score_and_operating_point(ct: Dataset) -> None:
    first, second = banner_lines(_prediction(ct), make_ctx())
    assert first == "AI RESULT - chest-xr 1.2.0 - pneumonia 0.87 (op 0.31)"
    assert second == "NOT FOR PRIMARY DIAGNOSIS"
    ctx = make_ctx()
    pixels, geometry = render_key_image(_prediction(ct), ct, ref_of(ct), ctx)
    banner = pixels[: geometry.banner]
    assert (banner.max(axis=2) > 200).sum() > 200  # text was drawn
    red = (banner[..., 0] > 200) & (banner[..., 1] < 150)
    assert red[geometry.banner // 2 :].sum() > 50  # the warning line, in red
    other, _ = render_key_image(_prediction(ct), ct, ref_of(ct), make_ctx(model_version="7.7.7"))
    assert not np.array_equal(other[: geometry.banner], banner)


def test_heatmap_changes_pixels_only_where_it_is_high(ct: Dataset) -> None:
    ctx = make_ctx()
    plain_prediction = _prediction(ct, with_heatmap=False)
    plain, geometry = render_key_image(plain_prediction, ct, ref_of(ct), ctx)
    hot, _ = render_key_image(_prediction(ct), ct, ref_of(ct), ctx)
    rows, columns = int(ct.Rows), int(ct.Columns)
    # inside the hot square (with a margin for interpolation)
    x0, y0 = geometry.to_output(columns / 8 + 2, rows / 8 + 2, rows, columns)
    x1, y1 = geometry.to_output(columns * 3 / 8 - 2, rows * 3 / 8 - 2, rows, columns)
    inside = np.abs(
        hot[int(y0) : int(y1), int(x0) : int(x1)].astype(int)
        - plain[int(y0) : int(y1), int(x0) : int(x1)].astype(int)
    )
    assert inside.mean() > 20
    # elsewhere: identical, except within a few pixels of the square (interpolation)
    e0 = geometry.to_output(columns / 8, rows / 8, rows, columns)
    e1 = geometry.to_output(columns * 3 / 8, rows * 3 / 8, rows, columns)
    changed = np.any(hot != plain, axis=2)
    changed[int(e0[1]) - 6 : int(e1[1]) + 6, int(e0[0]) - 6 : int(e1[0]) + 6] = False
    assert changed.sum() == 0


def test_boxes_and_contours_are_drawn(ct: Dataset) -> None:
    ctx = make_ctx()
    pixels, geometry = render_key_image(_prediction(ct), ct, ref_of(ct), ctx)
    plain, _ = render_key_image(_prediction(ct), ct, ref_of(ct), ctx, overlays=False)
    rows, columns = int(ct.Rows), int(ct.Columns)
    x0, y0 = geometry.to_output(columns * 0.6, rows * 0.6, rows, columns)
    x1, _ = geometry.to_output(columns * 0.8, rows * 0.6, rows, columns)
    edge = pixels[int(y0), int(x0) + 1 : int(x1) - 1]
    assert np.all(edge == (255, 215, 0))
    cyan = np.all(pixels == (0, 255, 255), axis=2)
    assert cyan.sum() > 20
    assert not np.all(plain == (0, 255, 255), axis=2).any()


@pytest.mark.parametrize(
    ("name", "photometric"), [("RG3_UNCR.dcm", "MONOCHROME1"), ("MR_small.dcm", "MONOCHROME2")]
)
def test_windowing_follows_photometric_interpretation(name: str, photometric: str) -> None:
    ds = data_store_file(name) if name.startswith("RG") else pydicom_file(name)
    assert ds.PhotometricInterpretation == photometric
    plain, geometry = render_key_image(_prediction(ds), ds, ref_of(ds), make_ctx(), overlays=False)
    image = plain[geometry.banner :, geometry.x0 : geometry.x0 + geometry.image_columns, 0]
    stored = ds.pixel_array.astype(float)
    r = np.arange(geometry.image_rows) * ds.Rows // geometry.image_rows
    c = np.arange(geometry.image_columns) * ds.Columns // geometry.image_columns
    stored = stored[r][:, c]
    high, low = stored >= np.percentile(stored, 95), stored <= np.percentile(stored, 5)
    if photometric == "MONOCHROME1":
        assert image[high].mean() < image[low].mean()  # high values are dark
    else:
        assert image[high].mean() > image[low].mean()


def test_large_radiograph_is_downsampled_and_validates(tmp_path: Path) -> None:
    cr = data_store_file("RG3_UNCR.dcm")  # 1760 x 1760
    sc = build_key_image(_prediction(cr), [cr], make_ctx())
    assert max(sc.Rows, sc.Columns) <= MAX_SIZE
    assert max(sc.Rows, sc.Columns) >= 900
    path = write(sc, tmp_path / "cr.dcm")
    assert dciodvfy_errors(path) == []


def test_small_image_is_enlarged_and_validates(tmp_path: Path) -> None:
    mr = pydicom_file("MR_small.dcm")  # 64 x 64
    sc = build_key_image(_prediction(mr), [mr], make_ctx())
    assert sc.Columns >= 512
    assert dciodvfy_errors(write(sc, tmp_path / "mr.dcm")) == []


def test_uids_are_deterministic(ct: Dataset) -> None:
    first = build_key_image(_prediction(ct), [ct], make_ctx())
    assert build_key_image(_prediction(ct), [ct], make_ctx()).SOPInstanceUID == first.SOPInstanceUID
    assert (
        build_key_image(_prediction(ct), [ct], make_ctx("b")).SOPInstanceUID != first.SOPInstanceUID
    )


def test_heatmap_of_the_wrong_shape_is_refused(ct: Dataset) -> None:
    prediction = _prediction(ct)
    prediction.heatmap = np.zeros((8, 8), dtype=np.float32)
    with pytest.raises(ResultError, match="heatmap"):
        build_key_image(prediction, [ct], make_ctx())


def test_matplotlib_global_state_is_left_alone(ct: Dataset) -> None:
    before = dict(matplotlib.rcParams)
    backend = matplotlib.get_backend()
    build_key_image(_prediction(ct), [ct], make_ctx())
    assert dict(matplotlib.rcParams) == before
    assert matplotlib.get_backend() == backend
