"""Grad-CAM for TorchScript models through the submodules the manifest names.

Scripted modules refuse hooks, so a TorchScript classifier whose manifest declares
``explain.feature_module`` / ``explain.head_module`` gets Grad-CAM computed through those
two submodules. The network here only sees one region of the image (a fixed mask in its
feature stage), so its Grad-CAM must peak on the bright square inside that region and stay
cold on the identical square outside it; a wrong split falls back to occlusion.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from radpilot.models.inference import load_model
from radpilot.models.package import ModelPackage
from tests import model_factory as mf
from tests.test_models_explain import BOTTOM_RIGHT, SIZE, TOP_LEFT, two_squares


class Mask(nn.Module):
    def __init__(self, region: Sequence[float]) -> None:
        super().__init__()
        mask = torch.zeros(1, 1, *SIZE)
        top, bottom = round(region[0] * SIZE[0]), round(region[1] * SIZE[0])
        left, right = round(region[2] * SIZE[1]), round(region[3] * SIZE[1])
        mask[..., top:bottom, left:right] = 1.0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


class SplitNet(nn.Module):
    """``head(features(x))``: a masked convolution, then pooling and a linear layer."""

    def __init__(self, region: Sequence[float]) -> None:
        super().__init__()
        torch.manual_seed(0)
        conv = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        with torch.no_grad():
            conv.weight.fill_(0.1)
            conv.bias.zero_()
        self.features = nn.Sequential(Mask(region), conv, nn.ReLU())
        linear = nn.Linear(4, 1)
        with torch.no_grad():
            linear.weight.fill_(2.0)
            linear.bias.fill_(-0.5)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def split_package(folder: Path, region: Sequence[float], head: str = "head") -> Path:
    manifest = mf.manifest_dict(
        "split",
        "classification",
        "torchscript",
        "model.pt",
        ["finding"],
        SIZE,
        explain={"feature_module": "features", "head_module": head},
    )
    return mf.package(folder, SplitNet(region), manifest)


def test_gradcam_through_the_declared_split_follows_the_region(tmp_path: Path) -> None:
    image, first, second = two_squares()
    for region, looked, ignored in ((TOP_LEFT, first, second), (BOTTOM_RIGHT, second, first)):
        model = load_model(ModelPackage.open(split_package(tmp_path / str(region), region)))
        assert model.explainer is not None and model.explainer.method == "gradcam"
        heat = model.predict([image]).heatmap
        assert heat is not None and heat.shape == looked.shape
        assert float(heat.min()) >= 0.0 and float(heat.max()) == 1.0
        assert heat[looked].mean() > 3 * heat[ignored].mean()
        assert model.explainer.method == "gradcam"  # it did not fall back


def test_a_split_that_is_not_the_network_falls_back_to_occlusion(tmp_path: Path) -> None:
    image, first, second = two_squares()
    # "features.1" is the bare convolution: head(conv(x)) skips the mask and the ReLU.
    model = load_model(ModelPackage.open(split_package(tmp_path / "bad", TOP_LEFT, "features.1")))
    heat = model.predict([image]).heatmap
    assert model.explainer is not None and model.explainer.method == "occlusion"
    assert heat is not None and heat[first].mean() > 3 * heat[second].mean()


def test_a_head_starting_with_an_inplace_relu_still_gets_gradcam(tmp_path: Path) -> None:
    """MONAI's DenseNet head begins with ReLU(inplace=True)."""
    image, first, second = two_squares()
    folder = split_package(tmp_path / "inplace", TOP_LEFT)
    net = SplitNet(TOP_LEFT)
    net.head = nn.Sequential(nn.ReLU(inplace=True), *net.head)
    manifest = mf.manifest_dict(
        "split",
        "classification",
        "torchscript",
        "model.pt",
        ["finding"],
        SIZE,
        explain={"feature_module": "features", "head_module": "head"},
    )
    model = load_model(ModelPackage.open(mf.package(folder, net, manifest)))
    heat = model.predict([image]).heatmap
    assert model.explainer is not None and model.explainer.method == "gradcam"
    assert heat is not None and heat[first].mean() > 3 * heat[second].mean()
