"""The model packages the pipeline benchmark runs (real MONAI networks, seeded weights).

Weights are random but fixed (seed 0): the benchmark measures the pipeline around the
network, and the network's cost is that of the architecture, not of its training.

- ``cxr-bench``: MONAI DenseNet-121, 2D, 1 channel, 224 x 224, one sigmoid output with a
  critical finding and an operating point: the shape of a chest-radiograph triage model.
- ``ct-bench``: MONAI 3D U-Net (16-32-64-128 channels), input 64 x 128 x 128, two classes
  (background, lesion): the shape of a small CT segmentation model.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

from radpilot.models.manifest import MANIFEST_NAME

__all__ = ["build_ct_model", "build_cxr_model"]


def _trace(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    module.eval()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.jit.trace(module, example).save(str(path))


def _manifest(name: str, task: str, size: list[int], output: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": "radpilot.model/1",
        "name": name,
        "version": "1.0.0",
        "task": task,
        "runtime": "torchscript",
        "weights": "model.pt",
        "use_case": "benchmark",
        "input": {"dimensions": len(size), "size": size, "channels": 1},
        "output": output,
        "intended_use": "Benchmark of the radpilot pipeline only; random weights.",
        "limitations": ["random weights: its outputs mean nothing"],
    }


def build_cxr_model(folder: Path) -> Path:
    """DenseNet-121 at 224 px as a TorchScript package."""
    from monai.networks.nets import DenseNet121

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    network = DenseNet121(spatial_dims=2, in_channels=1, out_channels=1)
    _trace(network, torch.rand(1, 1, 224, 224), folder / "model.pt")
    manifest = _manifest(
        "cxr-bench",
        "classification",
        [224, 224],
        {
            "labels": ["pneumonia"],
            "activation": "sigmoid",
            "operating_points": [{"name": "default", "label": "pneumonia", "threshold": 0.5}],
            "default_operating_point": "default",
            "critical_findings": ["pneumonia"],
        },
    )
    # Grad-CAM through DenseNet's two halves (forward = class_layers(features(x))).
    manifest["explain"] = {"feature_module": "features", "head_module": "class_layers"}
    (folder / MANIFEST_NAME).write_text(yaml.safe_dump(manifest, sort_keys=False))
    return folder


def build_ct_model(folder: Path) -> Path:
    """A 3D U-Net at 64 x 128 x 128 as a TorchScript package."""
    from monai.networks.nets import UNet

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    network = UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        channels=(16, 32, 64, 128),
        strides=(2, 2, 2),
    )
    _trace(network, torch.rand(1, 1, 64, 128, 128), folder / "model.pt")
    manifest = _manifest(
        "ct-bench",
        "segmentation",
        [64, 128, 128],
        {
            "labels": ["background", "lesion"],
            "activation": "softmax",
            "background_label": "background",
        },
    )
    manifest["input"]["window"] = {"center": 40, "width": 400}
    (folder / MANIFEST_NAME).write_text(yaml.safe_dump(manifest, sort_keys=False))
    return folder
