"""Predictions on real DICOM, per task, checked against the pixels themselves.

The networks (tests/model_factory.py) compute simple known things: a box around the
bright pixels, a threshold mask, a fraction, the identity. So every expectation below is
computed independently from the DICOM pixel data, and checks radpilot's decoding,
intensity scaling, MONOCHROME1 handling, resizing, letterboxing, slice sorting and the
mapping of results back to source coordinates.
"""

from __future__ import annotations

import copy
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid

from radpilot.core.errors import ModelError
from radpilot.models.inference import LoadedModel, load_model
from radpilot.models.package import ModelPackage
from tests import model_factory as mf


def read(name: str) -> Dataset:
    return pydicom.dcmread(get_testdata_file(name))


def model(
    folder: Path, module: Any, task: str, labels: list[str], size: list[int], **extra: Any
) -> LoadedModel:
    manifest = mf.manifest_dict("m", task, "torchscript", "model.pt", labels, size, **extra)
    path = mf.package(folder, module, manifest, script=isinstance(module, mf.BrightBoxDetector))
    return load_model(ModelPackage.open(path))


def painted(ds: Dataset, rows: slice, cols: slice) -> Dataset:
    """A copy of ``ds`` with a rectangle far brighter than anything else in it."""
    out = copy.deepcopy(ds)
    pixels = out.pixel_array.copy()
    info = np.iinfo(pixels.dtype)
    low, high = int(pixels.min()), int(pixels.max())
    pixels[rows, cols] = min(info.max, high + (high - low) + 10)
    out.PixelData = pixels.tobytes()
    out.SOPInstanceUID = generate_uid()
    return out


def unit(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    return (values - values.min()) / (values.max() - values.min())


# detection -----------------------------------------------------------------------------
def test_detection_box_in_source_coordinates(tmp_path: Path) -> None:
    ct = painted(read("CT_small.dcm"), slice(30, 50), slice(70, 110))
    detector = model(
        tmp_path, mf.BrightBoxDetector(), "detection", ["bright"], [64, 64],
        output={"operating_points": [{"name": "op", "label": "bright", "threshold": 0.5}]},
    )  # fmt: skip
    prediction = detector.predict([ct])
    assert len(prediction.boxes) == 1, "the padding row must be dropped"
    box = prediction.boxes[0]
    assert box.image.sop_instance_uid == ct.SOPInstanceUID and box.image.frame == 1
    tolerance = 2.0  # one network pixel is two source pixels (128 -> 64)
    assert box.x0 == pytest.approx(70, abs=tolerance) and box.x1 == pytest.approx(
        110, abs=tolerance
    )
    assert box.y0 == pytest.approx(30, abs=tolerance) and box.y1 == pytest.approx(50, abs=tolerance)
    finding = prediction.findings[0]
    assert (finding.label, finding.score, finding.positive) == ("bright", pytest.approx(0.9), True)
    assert prediction.key_image == box.image


@pytest.mark.parametrize("keep_aspect", [True, False])
def test_detection_on_a_letterboxed_wide_image(tmp_path: Path, keep_aspect: bool) -> None:
    rng = np.random.default_rng(7)
    pixels = rng.integers(100, 400, size=(120, 300)).astype(np.uint16)
    pixels[20:60, 200:280] = 4000
    image = mf.image_dataset(pixels)
    detector = model(
        tmp_path, mf.BrightBoxDetector(), "detection", ["bright"], [64, 64],
        input={"keep_aspect": keep_aspect},
    )  # fmt: skip
    box = detector.predict([image]).boxes[0]
    scale_x = 64 / 300
    scale_y = scale_x if keep_aspect else 64 / 120
    assert box.x0 == pytest.approx(200, abs=1 / scale_x) and box.x1 == pytest.approx(
        280, abs=1 / scale_x
    )
    assert box.y0 == pytest.approx(20, abs=1 / scale_y) and box.y1 == pytest.approx(
        60, abs=1 / scale_y
    )


def test_detection_key_image_and_nothing_found(tmp_path: Path) -> None:
    plain = mf.image_dataset(np.full((40, 40), 300, dtype=np.uint16))
    bright = np.full((40, 40), 300, dtype=np.uint16)
    bright[5:15, 25:35] = 3000
    # one series, so that the images are in Instance Number order (series sort first, and
    # two random series UIDs would order them by chance)
    marked = mf.image_dataset(
        bright,
        study_uid=plain.StudyInstanceUID,
        series_uid=plain.SeriesInstanceUID,
        instance=2,
    )
    detector = model(tmp_path, mf.BrightBoxDetector(), "detection", ["bright"], [40, 40])
    nothing = detector.predict([plain])
    assert nothing.boxes == [] and nothing.findings[0].score == 0.0
    both = detector.predict([marked, plain])
    assert [i.sop_instance_uid for i in both.images] == [
        plain.SOPInstanceUID,
        marked.SOPInstanceUID,
    ]
    assert both.key_image is not None and both.key_image.sop_instance_uid == marked.SOPInstanceUID
    assert (both.boxes[0].x0, both.boxes[0].y0, both.boxes[0].x1, both.boxes[0].y1) == (
        25.0, 5.0, 35.0, 15.0,
    )  # fmt: skip


# segmentation --------------------------------------------------------------------------
def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("background", [True, False])
def test_segmentation_mask_is_aligned(tmp_path: Path, background: bool) -> None:
    mr = painted(read("MR_small.dcm"), slice(10, 30), slice(20, 44))
    expected = np.zeros((64, 64), dtype=bool)
    expected[10:30, 20:44] = True
    output: dict[str, Any] = {"activation": "softmax" if background else "sigmoid"}
    if background:
        output["background_label"] = "background"
    segmenter = model(
        tmp_path, mf.ThresholdSegmenter(background=background), "segmentation", ["lesion"],
        [32, 48], output=output,
    )  # fmt: skip
    prediction = segmenter.predict([mr])
    mask = prediction.masks["lesion"]
    assert mask.shape == (1, 64, 64) and mask.dtype == bool
    assert iou(mask[0], expected) > 0.85
    assert prediction.findings[0].label == "lesion" and prediction.findings[0].score > 0.99
    assert list(prediction.masks) == ["lesion"], "no mask for the background"
    prediction.check()


def series(count: int, marked: set[int], rows: int = 40) -> tuple[list[Dataset], dict[str, int]]:
    """A 3D series: slice k at z = 2.5 k, a bright square on the ``marked`` slices,
    Instance Numbers running against the positions, shuffled; and each UID's k."""
    study, uid = generate_uid(), generate_uid()
    datasets = []
    rng = np.random.default_rng(3)
    for k in range(count):
        pixels = rng.integers(0, 200, size=(rows, rows)).astype(np.int16)
        if k in marked:
            pixels[8:20, 12:30] = 3000
        ds = mf.image_dataset(
            pixels, study_uid=study, series_uid=uid, instance=count - k,
            position=(-20.0, -20.0, 2.5 * k), rescale=(1.0, -1024.0), modality="CT",
        )  # fmt: skip
        datasets.append(ds)
    truth = {ds.SOPInstanceUID: k for k, ds in enumerate(datasets)}
    random.Random(5).shuffle(datasets)
    return datasets, truth


@pytest.mark.parametrize("spacing", [None, [2.5, 1.0, 1.0]])
def test_3d_segmentation_sorts_slices_by_position(tmp_path: Path, spacing: Any) -> None:
    datasets, slice_of = series(8, marked={2, 3, 4})
    size = [8, 24, 24] if spacing else [8, 32, 32]
    segmenter = model(
        tmp_path, mf.ThresholdSegmenter(background=False), "segmentation", ["lesion"], size,
        input={"dimensions": 3, "spacing_mm": spacing},
    )  # fmt: skip
    prediction = segmenter.predict(datasets)
    assert [slice_of[i.sop_instance_uid] for i in prediction.images] == list(range(8))
    mask = prediction.masks["lesion"]
    assert mask.shape == (8, 40, 40)
    assert [bool(m.any()) for m in mask] == [k in {2, 3, 4} for k in range(8)]
    expected = np.zeros((40, 40), dtype=bool)
    expected[8:20, 12:30] = True
    assert iou(mask[3], expected) > 0.75
    assert prediction.key_image is not None
    assert slice_of[prediction.key_image.sop_instance_uid] in {2, 3, 4}


# measurement ---------------------------------------------------------------------------
def test_measurement_values_and_units(tmp_path: Path) -> None:
    mr = read("MR_small.dcm")
    measurer = model(
        tmp_path, mf.MeasureNet(), "measurement", ["mr"], [64, 64],
        output={"measurements": [{"name": "bright_fraction", "unit": "1"},
                                 {"name": "mean_intensity", "unit": "1"}]},
    )  # fmt: skip
    prediction = measurer.predict([mr])
    values = {m.name: m for m in prediction.measurements}
    scaled = unit(mr.pixel_array)
    assert values["bright_fraction"].value == pytest.approx(float((scaled > 0.5).mean()), abs=1e-6)
    assert values["mean_intensity"].value == pytest.approx(float(scaled.mean()), abs=1e-5)
    assert values["bright_fraction"].unit == "1"
    assert values["bright_fraction"].image is not None
    assert values["bright_fraction"].image.sop_instance_uid == mr.SOPInstanceUID
    assert prediction.findings == []


# enhancement ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "normalize"),
    [("CT_small.dcm", (0.0, 1.0)), ("MR_small.dcm", (0.5, 0.25)), ("emri_small.dcm", (0.0, 1.0))],
)
def test_identity_enhancement_returns_the_input(
    tmp_path: Path, name: str, normalize: tuple[float, float]
) -> None:
    ds = read(name)
    source = ds.pixel_array if ds.get("NumberOfFrames", 1) > 1 else ds.pixel_array[None]
    enhancer = model(
        tmp_path, mf.IntensityMap(), "enhancement", ["denoised"], list(source.shape[1:]),
        input={"normalize_mean": normalize[0], "normalize_std": normalize[1]},
    )  # fmt: skip
    prediction = enhancer.predict([ds])
    assert prediction.enhanced is not None
    assert prediction.enhanced.dtype == source.dtype
    assert np.array_equal(prediction.enhanced, source)
    assert len(prediction.images) == source.shape[0]


def test_inverting_enhancement_undoes_the_scaling(tmp_path: Path) -> None:
    ds = read("CT_small.dcm")  # int16 with a rescale intercept
    enhancer = model(
        tmp_path, mf.IntensityMap(scale=-1.0, shift=1.0), "enhancement", ["inverted"], [128, 128]
    )
    enhanced = enhancer.predict([ds]).enhanced
    stored = ds.pixel_array.astype(np.int32)
    assert enhanced is not None and enhanced.dtype == np.int16
    assert np.array_equal(enhanced[0], stored.max() + stored.min() - stored)


def test_3d_enhancement_in_slice_order(tmp_path: Path) -> None:
    datasets, slice_of = series(6, marked={1})
    enhancer = model(
        tmp_path, mf.IntensityMap(), "enhancement", ["same"], [6, 40, 40], input={"dimensions": 3}
    )
    prediction = enhancer.predict(datasets)
    by_uid = {ds.SOPInstanceUID: ds for ds in datasets}
    assert prediction.enhanced is not None and prediction.enhanced.shape == (6, 40, 40)
    assert [slice_of[i.sop_instance_uid] for i in prediction.images] == list(range(6))
    for image, plane in zip(prediction.images, prediction.enhanced, strict=True):
        assert np.array_equal(plane, by_uid[image.sop_instance_uid].pixel_array)


# intensity -----------------------------------------------------------------------------
def test_window_in_modality_units(tmp_path: Path) -> None:
    from radpilot.models.preprocess import prepare

    ct = read("CT_small.dcm")  # Rescale Slope/Intercept at the top level
    enhanced_ct = read("eCT_Supplemental.dcm")  # in the shared functional groups
    transform = enhanced_ct.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    for ds, rescale, size in (
        (ct, ct, 128),
        (enhanced_ct, transform, 512),
    ):
        enhancer = model(
            tmp_path / str(size), mf.IntensityMap(), "enhancement", ["x"], [size, size],
            input={"window": {"center": 40, "width": 400}},
        )  # fmt: skip
        samples = prepare([ds], enhancer.manifest.input)
        stored = ds.pixel_array if ds.pixel_array.ndim == 3 else ds.pixel_array[None]
        assert len(samples) == len(stored)
        for sample, frame in zip(samples, stored, strict=True):
            hu = frame * float(rescale.RescaleSlope) + float(rescale.RescaleIntercept)
            expected = np.clip((hu - (40 - 200)) / 400, 0, 1)
            assert np.allclose(sample.array[0], expected, atol=1e-6)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    from radpilot.models.preprocess import prepare

    mono1 = pydicom.dcmread(mf_data("RG1_UNCR.dcm"))
    assert mono1.PhotometricInterpretation == "MONOCHROME1"
    twin = copy.deepcopy(mono1)
    stored = mono1.pixel_array
    twin.PixelData = (int(stored.max()) - stored).astype(stored.dtype).tobytes()
    twin.PhotometricInterpretation = "MONOCHROME2"
    enhancer = model(tmp_path, mf.IntensityMap(), "enhancement", ["x"], [64, 64])
    [a] = prepare([mono1], enhancer.manifest.input)
    [b] = prepare([twin], enhancer.manifest.input)
    assert np.allclose(a.array, b.array, atol=1e-5), "MONOCHROME1 must read as its MONO2 twin"
    rows = ((np.arange(64) + 0.5) * stored.shape[0] / 64).astype(int)
    cols = ((np.arange(64) + 0.5) * stored.shape[1] / 64).astype(int)
    sampled = stored[np.ix_(rows, cols)].astype(np.float64)
    assert np.corrcoef(sampled.ravel(), a.array[0].ravel())[0, 1] < -0.9, "high stored = dark"


def mf_data(name: str) -> Path:
    from tests.conftest import pydicom_data_files

    return next(p for p in pydicom_data_files() if p.name == name)


def test_compressed_monochrome1_reads_like_uncompressed(tmp_path: Path) -> None:
    from radpilot.models.preprocess import prepare

    enhancer = model(tmp_path, mf.IntensityMap(), "enhancement", ["x"], [64, 64])
    [raw] = prepare([pydicom.dcmread(mf_data("RG1_UNCR.dcm"))], enhancer.manifest.input)
    [j2k] = prepare([pydicom.dcmread(mf_data("RG1_J2KR.dcm"))], enhancer.manifest.input)
    assert np.array_equal(raw.array, j2k.array)


def test_colour_to_grey_or_three_channels(tmp_path: Path) -> None:
    from radpilot.models.preprocess import prepare

    rgb = read("SC_rgb.dcm")
    pixels = rgb.pixel_array.astype(np.float64)
    grey_model = model(tmp_path / "g", mf.IntensityMap(), "enhancement", ["x"], [100, 100])
    [grey] = prepare([rgb], grey_model.manifest.input)
    luma = unit(pixels) @ np.array([0.299, 0.587, 0.114])
    assert grey.array.shape == (1, 100, 100)
    assert np.allclose(grey.array[0], luma, atol=1e-5)
    colour_model = model(
        tmp_path / "c", mf.RegionNet(size=(100, 100)), "classification", ["x"], [100, 100],
        input={"channels": 3},
    )  # fmt: skip
    [colour] = prepare([rgb], colour_model.manifest.input)
    assert np.allclose(colour.array, np.moveaxis(unit(pixels), -1, 0), atol=1e-5)
    assert len(colour_model.predict([rgb]).findings) == 1


def test_pneumoniamnist_radiographs_batch(tmp_path: Path) -> None:
    from radpilot.data.synth import pneumoniamnist_cases, radiograph
    from tests.conftest import shared_data

    npz = shared_data("pneumoniamnist", "pneumoniamnist.npz")
    studies = [[radiograph(case, size=64)] for case in pneumoniamnist_cases(npz, count=4)]
    classifier = model(
        tmp_path, mf.RegionNet(size=(28, 28), region=(0.2, 0.8, 0.1, 0.5)), "classification",
        ["opacity"], [28, 28],
    )  # fmt: skip
    batched = classifier.predict_batch(studies)
    single = [classifier.predict(study) for study in studies]
    assert [p.findings[0].score for p in batched] == pytest.approx(
        [p.findings[0].score for p in single], abs=1e-6
    )
    assert len({round(p.findings[0].score, 6) for p in batched}) == 4, "real images differ"
    for prediction, study in zip(batched, studies, strict=True):
        assert prediction.heatmap is not None and prediction.heatmap.shape == (64, 64)
        assert prediction.key_image is not None
        assert prediction.key_image.sop_instance_uid == study[0].SOPInstanceUID


@pytest.mark.slow
def test_every_real_file_predicts_or_fails_with_a_reason(tmp_path: Path) -> None:
    """pydicom's and pydicom-data's files: every vendor, codec, bit depth, photometric
    interpretation and frame count either gives a checked prediction with a heatmap of
    the key image's size, or a one-line ModelError; never another exception."""
    from tests.helpers_index import real_dicom_files

    classifier = model(tmp_path, mf.RegionNet(size=(16, 16)), "classification", ["x"], [16, 16])
    predicted, refused = 0, 0
    for path in real_dicom_files():
        with warnings.catch_warnings():
            # pydicom warns about files it reads anyway; production keeps those out of the
            # log (core/logging.py), and pytest would turn them into errors
            warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\..*)?")
            try:
                ds = pydicom.dcmread(path)
            except InvalidDicomError:
                continue
            try:
                prediction = classifier.predict([ds])
            except ModelError as exc:
                assert str(exc).startswith("m:1.0.0: ") and "\n" not in str(exc), path.name
                refused += 1
                continue
        prediction.check()
        key = prediction.key_image
        assert key is not None and prediction.heatmap is not None
        assert prediction.heatmap.shape == (ds.Rows, ds.Columns), path.name
        assert len(prediction.images) == int(ds.get("NumberOfFrames") or 1), path.name
        predicted += 1
    assert predicted >= 100 and refused >= 10, (predicted, refused)
