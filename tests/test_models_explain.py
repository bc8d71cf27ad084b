"""Heatmaps: shape, range, and that they follow where the network looks, in every runtime.

The test image holds two identical bright squares; the network (RegionNet) only looks at
one region of the image. The heatmap must peak on the square inside that region and stay
cold on the other, and move when the network looks elsewhere: Grad-CAM for the MONAI
bundle, occlusion for TorchScript and ONNX.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from radpilot.models.inference import load_model
from radpilot.models.package import ModelPackage
from tests import model_factory as mf

WEIGHTS = {"torchscript": "model.pt", "onnx": "model.onnx", "monai_bundle": "models/model.pt"}
SIZE = [32, 32]
TOP_LEFT = (0.0, 0.5, 0.0, 0.5)  # region (top, bottom, left, right) as fractions
BOTTOM_RIGHT = (0.5, 1.0, 0.5, 1.0)


def region_package(folder: Path, runtime: str, region: tuple[float, ...], **extra: object) -> Path:
    manifest = mf.manifest_dict(
        "looker", "classification", runtime, WEIGHTS[runtime], ["finding"], SIZE, **extra
    )
    return mf.package(
        folder,
        mf.RegionNet(size=SIZE, region=region),
        manifest,
        bundle_target="tests.model_factory.RegionNet",
        bundle_args={"size": SIZE, "region": list(region)},
    )


def two_squares(rows: int = 96, cols: int = 128) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """A real MR image resampled to rows x cols, with two equal bright squares:
    one in the top-left quarter, one in the bottom-right quarter."""
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    ys = (np.arange(rows) * mr.shape[0] / rows).astype(int)
    xs = (np.arange(cols) * mr.shape[1] / cols).astype(int)
    pixels = (mr[np.ix_(ys, xs)] // 4).astype(np.uint16)
    first = np.zeros((rows, cols), dtype=bool)
    first[12:36, 16:48] = True
    second = np.zeros((rows, cols), dtype=bool)
    second[60:84, 80:112] = True
    pixels[first | second] = 4000
    return mf.image_dataset(pixels), first, second


@pytest.mark.parametrize("runtime", list(WEIGHTS))
def test_heatmap_follows_the_region_the_network_looks_at(tmp_path: Path, runtime: str) -> None:
    image, first, second = two_squares()
    for region, looked, ignored in ((TOP_LEFT, first, second), (BOTTOM_RIGHT, second, first)):
        path = region_package(tmp_path / f"{runtime}-{region[0]}", runtime, region)
        model = load_model(ModelPackage.open(path))
        expected = "gradcam" if runtime == "monai_bundle" else "occlusion"
        assert model.explainer is not None and model.explainer.method == expected
        heat = model.predict([image]).heatmap
        assert heat is not None
        assert heat.shape == (96, 128) and heat.dtype == np.float32
        assert float(heat.min()) >= 0.0 and float(heat.max()) == pytest.approx(1.0)
        peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
        grown = np.zeros_like(looked)
        rows, cols = np.nonzero(looked)
        grown[rows.min() - 8 : rows.max() + 9, cols.min() - 8 : cols.max() + 9] = True
        assert grown[peak], f"{runtime}: peak {peak} is not on the square the network sees"
        assert heat[looked].mean() > 0.3
        assert heat[ignored].max() < 0.1, f"{runtime}: heat on the square it does not see"


def test_bundle_without_convolution_falls_back_to_occlusion(tmp_path: Path) -> None:
    image, first, second = two_squares()
    manifest = mf.manifest_dict(
        "flat", "classification", "monai_bundle", "models/model.pt", ["finding"], SIZE
    )
    region = {"size": SIZE, "region": list(TOP_LEFT), "use_conv": False}
    path = mf.package(
        tmp_path,
        mf.RegionNet(size=SIZE, region=TOP_LEFT, use_conv=False),
        manifest,
        bundle_target="tests.model_factory.RegionNet",
        bundle_args=region,
    )
    model = load_model(ModelPackage.open(path))
    assert model.explainer is not None and model.explainer.method == "gradcam"
    heat = model.predict([image]).heatmap
    assert model.explainer.method == "occlusion"
    assert heat is not None and heat[first].mean() > 0.3 and heat[second].max() < 0.1


def test_heatmap_over_a_letterboxed_image_stays_in_place(tmp_path: Path) -> None:
    image, first, second = two_squares(rows=64, cols=160)
    path = region_package(
        tmp_path, "torchscript", (0.0, 1.0, 0.0, 0.5), input={"keep_aspect": True}
    )
    heat = load_model(ModelPackage.open(path)).predict([image]).heatmap
    assert heat is not None and heat.shape == (64, 160)
    assert heat[first].mean() > 0.3 and heat[second].max() < 0.1


def test_no_heatmap_when_not_asked_or_not_a_2d_classifier(tmp_path: Path) -> None:
    image, _, _ = two_squares()
    path = region_package(tmp_path / "a", "torchscript", TOP_LEFT)
    model = load_model(ModelPackage.open(path), explain=False)
    assert model.explainer is None and model.predict([image]).heatmap is None
    manifest = mf.manifest_dict("seg", "segmentation", "torchscript", "model.pt", ["lesion"], SIZE)
    segmenter = load_model(
        ModelPackage.open(
            mf.package(tmp_path / "b", mf.ThresholdSegmenter(background=False), manifest)
        )
    )
    assert segmenter.explainer is None and segmenter.predict([image]).heatmap is None
