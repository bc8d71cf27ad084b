"""Embeddings (issue 7): the penultimate layer, declared in the manifest, taken in the same
forward pass in every runtime, and refused when the declaration does not fit the network."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import torch
import yaml
from pydicom.data import get_testdata_file
from torch import nn

from radpilot.core.errors import ManifestError, ModelError
from radpilot.models.inference import load_model
from radpilot.models.manifest import MANIFEST_NAME, parse_manifest
from radpilot.models.package import ModelPackage
from radpilot.models.preprocess import prepare
from tests import model_factory as mf

WEIGHTS = {"torchscript": "model.pt", "onnx": "model.onnx", "monai_bundle": "models/model.pt"}
CLASSIFIER_ARGS = {"in_shape": [1, 32, 32], "classes": 2, "channels": [4, 8], "strides": [2, 2]}
#: MONAI's Classifier runs net, final (Flatten, Linear), then a reshape that is the
#: identity for one output axis; the embedding is the Linear's input.
SPLIT = {"modules": ["net", "final.0"], "head": "final.1"}


class TwoOutputs(nn.Module):
    """The classifier returning (logits, penultimate features): what an ONNX export with
    an embedding output holds."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n: Any = self.network
        features = n.final[0](n.net(x))
        return n.final[1](features), features


def eager_embedding(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The eager network's (logits, penultimate features) on ``batch``."""
    network = mf.classifier_network().eval()
    with torch.inference_mode():
        logits, features = TwoOutputs(network)(torch.from_numpy(batch))
    return logits.numpy(), features.numpy()


def package(folder: Path, runtime: str, embedding: dict[str, Any] | None) -> Path:
    manifest = mf.manifest_dict(
        "chest", "classification", runtime, WEIGHTS[runtime], ["normal", "pneumonia"], [32, 32]
    )
    if embedding is not None:
        manifest["embedding"] = embedding
    if runtime != "onnx":
        return mf.package(
            folder,
            mf.classifier_network(),
            manifest,
            bundle_target="monai.networks.nets.Classifier",
            bundle_args=CLASSIFIER_ARGS,
        )
    folder.mkdir(parents=True)
    module = TwoOutputs(mf.classifier_network()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.rand(1, 1, 32, 32),),
            str(folder / WEIGHTS[runtime]),
            dynamo=False,
            input_names=["image"],
            output_names=["output", "embedding"],
            dynamic_axes={"image": {0: "batch"}, "output": {0: "batch"}, "embedding": {0: "batch"}},
        )
    (folder / MANIFEST_NAME).write_text(yaml.safe_dump(manifest, sort_keys=False))
    return folder


def image() -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


@pytest.mark.parametrize(
    ("runtime", "embedding"),
    [
        ("torchscript", SPLIT),
        ("monai_bundle", SPLIT),
        ("onnx", {"output": "embedding"}),
        ("onnx", {"output": 1}),
    ],
)
def test_every_runtime_gives_the_penultimate_layer(
    tmp_path: Path, runtime: str, embedding: dict[str, Any]
) -> None:
    model = load_model(ModelPackage.open(package(tmp_path / runtime, runtime, embedding)))
    assert model.embedder is not None
    ds = image()
    batch = np.stack([s.array for s in prepare([ds], model.manifest.input)])
    logits, features = eager_embedding(batch)
    prediction = model.predict([ds], explain=False)
    assert prediction.embedding is not None and prediction.embedding.shape == (512,)
    np.testing.assert_allclose(prediction.embedding, features[0], rtol=1e-4, atol=1e-5)
    plain = load_model(ModelPackage.open(package(tmp_path / f"{runtime}-plain", runtime, None)))
    unsplit = plain.predict([ds], explain=False)
    assert unsplit.embedding is None
    same = {f.label: f.score for f in unsplit.findings}
    for finding in prediction.findings:  # the split *is* the forward pass: same scores
        assert finding.score == pytest.approx(same[finding.label], abs=1e-5)
    sigmoid = 1 / (1 + np.exp(-logits[0]))  # the manifest's default activation
    assert same["pneumonia"] == pytest.approx(float(sigmoid[1]), abs=1e-5)


def test_a_study_embedding_is_the_mean_over_its_samples(tmp_path: Path) -> None:
    model = load_model(ModelPackage.open(package(tmp_path / "ts", "torchscript", SPLIT)))
    frames = pydicom.dcmread(get_testdata_file("emri_small.dcm"))  # 10 frames: 10 samples
    samples = prepare([frames], model.manifest.input)
    assert len(samples) == 10
    _, features = eager_embedding(np.stack([s.array for s in samples]))
    prediction = model.predict([frames], explain=False)
    assert prediction.embedding is not None
    np.testing.assert_allclose(prediction.embedding, features.mean(axis=0), rtol=1e-4, atol=1e-5)
    assert not np.allclose(features[0], features[-1])  # the mean is not one frame's


@pytest.mark.parametrize(
    ("embedding", "message"),
    [
        ({"modules": ["net"], "head": "final.1"}, "does not run"),  # skips reshape + flatten
        # the residual unit without its shortcut: the right shape, the wrong values
        (
            {
                "modules": ["net.layer_0", "net.layer_1.conv", "final.0"],
                "head": "final.1",
            },
            "do not reproduce",
        ),
        ({"modules": ["net", "nonexistent"], "head": "final.1"}, "no submodule 'nonexistent'"),
    ],
)
def test_a_split_that_does_not_fit_is_refused_at_load(
    tmp_path: Path, embedding: dict[str, Any], message: str
) -> None:
    path = package(tmp_path / "bad", "torchscript", embedding)
    with pytest.raises(ModelError, match=message):
        load_model(ModelPackage.open(path))


def test_an_onnx_output_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    path = package(tmp_path / "onnx", "onnx", {"output": "penultimate"})
    with pytest.raises(ModelError, match=r"outputs are output, embedding"):
        load_model(ModelPackage.open(path))
    path = package(tmp_path / "onnx2", "onnx", {"output": 5})
    with pytest.raises(ModelError, match=r"has 2 output"):
        load_model(ModelPackage.open(path))


@pytest.mark.parametrize(
    ("runtime", "embedding", "message"),
    [
        ("torchscript", "{modules: [net]}", "name both modules and head"),
        ("torchscript", "{output: embedding}", "torch runtimes name modules and head"),
        ("onnx", "{modules: [net], head: final.1}", "ONNX graphs name an output"),
        ("onnx", "{modules: [net], head: final.1, output: 1}", "not both"),
    ],
)
def test_the_manifest_refuses_a_declaration_that_cannot_work(
    runtime: str, embedding: str, message: str
) -> None:
    text = f"""schema: radpilot.model/1
name: chest
version: 1.0.0
task: classification
runtime: {runtime}
weights: model.bin
input: {{size: [32, 32]}}
output: {{labels: [normal, pneumonia]}}
intended_use: tests
embedding: {embedding}
"""
    with pytest.raises(ManifestError, match=message) as caught:
        parse_manifest(text, "m.yaml")
    assert "m.yaml:" in str(caught.value) and "embedding" in str(caught.value)


def test_the_reference_model_declares_its_penultimate_layer() -> None:
    reference = Path(__file__).resolve().parents[1] / "models/reference/package"
    model = load_model(ModelPackage.open(reference), explain=False)
    ds = image()
    prediction = model.predict([ds], explain=False)
    assert prediction.embedding is not None and prediction.embedding.shape == (184,)
    script = model.network.script  # type: ignore[attr-defined]
    sample = torch.from_numpy(prepare([ds], model.manifest.input)[0].array[None])
    with torch.inference_mode():
        maps = torch.relu(script.features(sample))
    np.testing.assert_allclose(
        prediction.embedding, maps.mean(dim=(2, 3))[0].numpy(), rtol=1e-4, atol=1e-5
    )


class BlankAgrees(nn.Module):
    """``head(features(x))`` plus a term that is zero on a blank input: a split that the
    blank check at load cannot tell from the network."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1))
        self.flatten = nn.Flatten()
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.flatten(self.features(x))) + x.abs().mean(dim=(1, 2, 3))[:, None]


def test_a_split_that_only_a_real_image_shows_wrong_is_refused_on_it(tmp_path: Path) -> None:
    manifest = mf.manifest_dict(
        "odd", "classification", "torchscript", "model.pt", ["normal", "pneumonia"], [32, 32]
    )
    manifest["embedding"] = {"modules": ["features", "flatten"], "head": "head"}
    torch.manual_seed(0)
    model = load_model(ModelPackage.open(mf.package(tmp_path / "odd", BlankAgrees(), manifest)))
    with pytest.raises(ModelError, match="do not reproduce"):
        model.predict([image()], explain=False)
