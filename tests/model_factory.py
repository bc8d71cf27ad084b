"""Build tiny, real model packages in temporary folders, for every runtime and task.

Nothing here is a mock: each builder writes a manifest and real weights (a TorchScript
archive, an ONNX graph, or a MONAI bundle with its configs and state dict) that radpilot
then loads with the real runtime. The networks are small enough to run in milliseconds,
and most compute something simple and known (a bounding box of the bright pixels, a
threshold mask, the identity) so that tests can check radpilot's geometry and intensity
handling against an expectation computed independently from the DICOM pixels.

The sleeping network calls the ``radpilot_test::sleep`` operator, which this module
registers with ``torch.library`` on import: import this module in any process that loads
that package.
"""

from __future__ import annotations

import json
import tarfile
import time
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from torch import nn

from radpilot.models.manifest import MANIFEST_NAME

__all__ = [
    "BrightBoxDetector",
    "IntensityMap",
    "MeasureNet",
    "RegionNet",
    "ThresholdSegmenter",
    "archive",
    "classifier_network",
    "image_dataset",
    "manifest_dict",
    "package",
]


@torch.library.custom_op("radpilot_test::sleep", mutates_args=())
def _sleep(x: torch.Tensor, seconds: float) -> torch.Tensor:
    time.sleep(seconds)
    return x.clone()


@_sleep.register_fake
def _sleep_fake(x: torch.Tensor, seconds: float) -> torch.Tensor:
    return torch.empty_like(x)


# networks ------------------------------------------------------------------------------
def classifier_network(size: int = 32, labels: int = 2, seed: int = 0) -> nn.Module:
    """MONAI's small Classifier with seeded weights (the same in every runtime)."""
    from monai.networks.nets import Classifier

    torch.manual_seed(seed)
    return Classifier(in_shape=(1, size, size), classes=labels, channels=(4, 8), strides=(2, 2))


class RegionNet(nn.Module):
    """A classifier that only looks at one region: logit = gain * (mean of the region - 0.25).

    ``region`` is (top, bottom, left, right) as fractions of the input size. The image is
    masked before a 1x1 convolution, so Grad-CAM's activations live in the region too;
    ``use_conv=False`` leaves no convolution at all (Grad-CAM has nothing to look at).
    """

    def __init__(
        self,
        size: Sequence[int] = (32, 32),
        region: Sequence[float] = (0.0, 0.5, 0.0, 0.5),
        gain: float = 8.0,
        use_conv: bool = True,
    ) -> None:
        super().__init__()
        self.use_conv = use_conv
        height, width = int(size[0]), int(size[1])
        mask = torch.zeros(1, 1, height, width)
        top, bottom = round(region[0] * height), round(region[1] * height)
        left, right = round(region[2] * width), round(region[3] * width)
        mask[..., top:bottom, left:right] = 1.0
        self.register_buffer("mask", mask)
        self.conv = nn.Conv2d(1, 1, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.zero_()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = x[:, :1] * self.mask
        if self.use_conv:
            features = self.conv(features)
        mean = features.sum(dim=(2, 3)) / self.mask.sum()
        return self.gain * (mean - 0.25)


class BrightBoxDetector(nn.Module):
    """One box around every pixel above ``threshold`` (score 0.9), plus a padding row."""

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = x[:, 0] > self.threshold
        height, width = bright.shape[1], bright.shape[2]
        rows = bright.any(dim=2)
        cols = bright.any(dim=1)
        ys = torch.arange(height, dtype=torch.float32).expand(rows.shape)
        xs = torch.arange(width, dtype=torch.float32).expand(cols.shape)
        big = torch.full_like(ys, 1e9)
        y0 = torch.where(rows, ys, big).min(dim=1).values
        y1 = torch.where(rows, ys, -big).max(dim=1).values + 1
        bigx = torch.full_like(xs, 1e9)
        x0 = torch.where(cols, xs, bigx).min(dim=1).values
        x1 = torch.where(cols, xs, -bigx).max(dim=1).values + 1
        found = rows.any(dim=1)
        score = torch.where(found, torch.full_like(y0, 0.9), torch.full_like(y0, -1.0))
        zero = torch.zeros_like(y0)
        box = torch.stack([x0, y0, x1, y1, score, zero], dim=1)
        box = torch.where(found[:, None], box, torch.full_like(box, -1.0))
        padding = torch.full_like(box, -1.0)
        return torch.stack([box, padding], dim=1)


class ThresholdSegmenter(nn.Module):
    """Logits of ``x > threshold`` (2D or 3D), with a background channel first if asked."""

    def __init__(self, threshold: float = 0.5, background: bool = True, gain: float = 20.0):
        super().__init__()
        self.threshold = threshold
        self.background = background
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        foreground = (x[:, :1] - self.threshold) * self.gain
        if self.background:
            return torch.cat([-foreground, foreground], dim=1)
        return foreground


class MeasureNet(nn.Module):
    """Two measurements: the fraction of pixels above 0.5, and the mean intensity."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x[:, :1].flatten(1)
        return torch.stack([(flat > 0.5).float().mean(dim=1), flat.mean(dim=1)], dim=1)


class IntensityMap(nn.Module):
    """``x * scale + shift`` on the first channel: the identity, or an inversion."""

    def __init__(self, scale: float = 1.0, shift: float = 0.0) -> None:
        super().__init__()
        self.scale = scale
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] * self.scale + self.shift


class RaisingNet(nn.Module):
    """Raises inside the network, every time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > -1e30):
            raise RuntimeError("deliberate failure inside the test network")
        return x.flatten(1)[:, :2]


class NaNNet(nn.Module):
    """Returns NaN scores."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :2] * float("nan")


class SleepyNet(nn.Module):
    """Sleeps ``seconds`` (through ``radpilot_test::sleep``), then returns two logits."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slept = torch.ops.radpilot_test.sleep(x, self.seconds)
        return slept.flatten(1)[:, :2]


# saving --------------------------------------------------------------------------------
def save_torchscript(module: nn.Module, example: torch.Tensor, path: Path, script: bool) -> None:
    """Trace (or script, for data-dependent control flow) and save ``module``."""
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = torch.jit.script(module) if script else torch.jit.trace(module, example)
        compiled.save(str(path))


def save_onnx(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Export ``module`` to ONNX with a dynamic batch axis (TorchScript-based exporter)."""
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            input_names=["image"],
            output_names=["output"],
            dynamic_axes={"image": {0: "batch"}, "output": {0: "batch"}},
        )


def manifest_dict(
    name: str,
    task: str,
    runtime: str,
    weights: str,
    labels: Sequence[str],
    size: Sequence[int],
    **extra: Any,
) -> dict[str, Any]:
    """A valid manifest; ``extra`` sets top-level keys, ``input``/``output`` merge."""
    body: dict[str, Any] = {
        "schema": "radpilot.model/1",
        "name": name,
        "version": "1.0.0",
        "task": task,
        "runtime": runtime,
        "weights": weights,
        "use_case": "test",
        "applies_to": {"modalities": ["CT", "MR", "CR", "DX", "OT"]},
        "input": {"dimensions": len(size), "size": list(size), "channels": 1},
        "output": {"labels": list(labels)},
        "intended_use": "Tests of radpilot only; not for clinical use.",
        "limitations": ["built by tests/model_factory.py"],
    }
    for key, value in extra.items():
        if key in ("input", "output"):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return body


def package(
    folder: Path,
    module: nn.Module,
    manifest: dict[str, Any],
    *,
    script: bool = False,
    bundle_target: str | None = None,
    bundle_args: dict[str, Any] | None = None,
) -> Path:
    """Write ``module`` in the manifest's runtime plus the manifest into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = manifest["input"]
    example = torch.rand(1, spec.get("channels", 1), *spec["size"])
    weights = folder / manifest["weights"]
    weights.parent.mkdir(parents=True, exist_ok=True)
    runtime = manifest["runtime"]
    if runtime == "torchscript":
        save_torchscript(module, example, weights, script)
    elif runtime == "onnx":
        save_onnx(module, example, weights)
    else:
        if bundle_target is None:
            raise ValueError("a MONAI bundle needs bundle_target (the network_def class)")
        configs = folder / "configs"
        configs.mkdir(exist_ok=True)
        network_def = {"_target_": bundle_target, **(bundle_args or {})}
        (configs / "inference.json").write_text(json.dumps({"network_def": network_def}))
        metadata = {"version": manifest["version"], "monai_version": "1.6.1", "task": "test"}
        (configs / "metadata.json").write_text(json.dumps(metadata))
        torch.save(module.state_dict(), weights)
    (folder / MANIFEST_NAME).write_text(yaml.safe_dump(manifest, sort_keys=False))
    return folder


def archive(folder: Path, destination: Path) -> Path:
    """Pack ``folder`` (inside one top-level folder) as .zip or .tar.gz by suffix."""
    if destination.name.endswith(".zip"):
        with zipfile.ZipFile(destination, "w") as bundle:
            for path in sorted(folder.rglob("*")):
                bundle.write(path, Path(folder.name) / path.relative_to(folder))
    else:
        with tarfile.open(destination, "w:gz") as bundle:
            bundle.add(folder, arcname=folder.name)
    return destination


# DICOM ---------------------------------------------------------------------------------
def image_dataset(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    study_uid: str | None = None,
    series_uid: str | None = None,
    instance: int = 1,
    position: Sequence[float] | None = None,
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    spacing: Sequence[float] | None = (0.5, 0.5),
    rescale: tuple[float, float] | None = None,
    modality: str = "OT",
) -> Dataset:
    """An in-memory Secondary Capture image of ``pixels`` (uint8/uint16/int16 grey)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality = modality
    ds.InstanceNumber = instance
    ds.Rows, ds.Columns = pixels.shape[-2], pixels.shape[-1]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = ds.BitsAllocated
    ds.HighBit = ds.BitsAllocated - 1
    ds.PixelRepresentation = 1 if np.issubdtype(pixels.dtype, np.signedinteger) else 0
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    if spacing is not None:
        ds.PixelSpacing = [float(v) for v in spacing]
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds
