"""Classification training on real PneumoniaMNIST radiographs, end to end.

One run trains for a few seconds; the tests check that its loss falls, that the package
radpilot wrote opens, loads and predicts on a 512 px DX radiograph as it did on the 28 px
training form of the same image, that the card's numbers agree with the data and the
manifest, and that the same seed gives the same weights hash.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from radpilot.data.synth import pneumoniamnist_cases, radiograph
from radpilot.models.inference import load_model
from radpilot.models.package import ModelPackage
from radpilot.training.config import load_config
from radpilot.training.data import input_spec, scale_batch
from radpilot.training.run import TrainResult, run_training
from tests.conftest import shared_data
from tests.training_helpers import classification_config, write_config


def script(path: Path) -> torch.jit.ScriptModule:
    """The TorchScript file, loaded without PyTorch 2.13's deprecation warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated")
        return torch.jit.load(path)  # type: ignore[no-untyped-call]


def train(folder: Path, **changes: object) -> TrainResult:
    folder.mkdir(parents=True, exist_ok=True)
    config = load_config(write_config(folder, classification_config(**changes)))
    return run_training(config, folder / "run")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train(tmp_path_factory.mktemp("classifier"))


def test_loss_falls(trained: TrainResult) -> None:
    losses = trained.loop.losses
    assert trained.loop.steps == len(losses) == 4 * (192 // 32)
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    assert trained.loop.best["auc"] > 0.75  # real signal, few seconds of training


def test_package_predicts_on_a_512_px_radiograph_as_on_the_training_image(
    trained: TrainResult,
) -> None:
    package = ModelPackage.open(trained.package)
    assert package.weights_sha256 == trained.weights_sha256
    model = load_model(package)
    manifest = package.manifest
    assert manifest.input.window is None and manifest.input.size == [28, 28]
    npz = shared_data("pneumoniamnist", "pneumoniamnist.npz")
    cases = list(pneumoniamnist_cases(npz, "test", count=16))
    network = script(package.weights_path)  # the same weights, fed the npz way
    spec = input_spec(load_config(trained.package.parents[1] / "train.yaml"))
    unit = scale_batch(np.stack([c.image for c in cases]).astype(np.float64), spec)
    x = (unit - manifest.input.normalize_mean) / manifest.input.normalize_std
    with torch.no_grad():
        expected = network(x).softmax(dim=1)[:, 1].numpy()
    threshold = manifest.output.operating_point()
    assert threshold is not None and threshold.label == "pneumonia"
    embedding = manifest.embedding  # written by training: the head's Linear and its input
    assert embedding is not None and embedding.head is not None
    assert embedding.modules[0] == manifest.explain.feature_module
    scores = []
    for number, case in enumerate(cases):
        prediction = model.predict([radiograph(case, size=512)], explain=number == 0)
        finding = next(f for f in prediction.findings if f.label == "pneumonia")
        assert finding.positive == (finding.score >= threshold.threshold)
        assert finding.critical == finding.positive
        if number == 0:
            assert prediction.heatmap is not None and prediction.heatmap.shape == (512, 512)
        assert prediction.embedding is not None  # the penultimate layer, from the manifest
        scores.append(finding.score)
    # The 512 px study is the 28 px image upsampled (synth) and brought back down
    # (preprocess): slightly blurred, so scores shift a little, but the model must rank
    # the studies as it ranks their training form (a wrong intensity, orientation or
    # normalisation would scramble this).
    assert float(np.corrcoef(scores, expected)[0, 1]) > 0.9
    assert float(np.mean(np.abs(np.array(scores) - expected))) < 0.2


def test_card_agrees_with_data_and_manifest(trained: TrainResult) -> None:
    card = json.loads((trained.package / "model-card.json").read_text())
    manifest = yaml.safe_load((trained.package / "radpilot-model.yaml").read_text())
    splits = card["data"]["splits"]
    assert {n: s["images"] for n, s in splits.items()} == {"train": 192, "val": 96, "test": 96}
    for split in splits.values():
        assert sum(split["labels"].values()) == split["images"] == split["patients"]
        assert split["labels"]["normal"] > 0 and split["labels"]["pneumonia"] > 0
    assert manifest["input"]["normalize_mean"] == card["preprocessing"]["normalize"]["mean"]
    assert card["model"]["weights_sha256"] == trained.weights_sha256
    points = {p["name"]: p for p in manifest["output"]["operating_points"]}
    assert list(points) == ["youden", "high_sensitivity"]
    assert manifest["output"]["default_operating_point"] == "youden"
    val_points = {p["name"]: p for p in card["validation"]["operating_points"]}
    for name, point in points.items():
        assert 0.0 < point["threshold"] < 1.0
        assert point["sensitivity"] == val_points[name]["sensitivity"]["value"]
        assert val_points[name]["sensitivity"]["n"] == splits["val"]["labels"]["pneumonia"]
    assert val_points["high_sensitivity"]["sensitivity"]["value"] >= 0.90
    for section in (card["validation"], card["test"]):
        auc = section["auc"]["pneumonia"]
        assert auc["method"] == "DeLong" and auc["low"] <= auc["value"] <= auc["high"]
        for point in section["operating_points"]:
            for key in ("sensitivity", "specificity", "ppv", "npv", "accuracy"):
                estimate = point[key]
                assert estimate["method"] == "Wilson"
                assert estimate["low"] <= estimate["value"] <= estimate["high"]
    assert "Trained for seconds." in manifest["limitations"]
    assert any("internal validation" in item for item in manifest["limitations"])
    text = (trained.package / "model-card.md").read_text()
    assert "## Intended use" in text and "Tests only." in text and "DeLong" in text


def test_same_seed_same_weights_hash_other_seed_other_hash(
    trained: TrainResult, tmp_path: Path
) -> None:
    again = train(tmp_path / "again")
    assert again.weights_sha256 == trained.weights_sha256
    assert again.loop.losses == trained.loop.losses
    other = train(tmp_path / "other", seed=4)
    assert other.weights_sha256 != trained.weights_sha256


def test_transfer_learning_time_budget_and_early_stopping(
    trained: TrainResult, tmp_path: Path
) -> None:
    best = trained.package.parent / "checkpoints" / "best.pt"
    warm = train(
        tmp_path / "warm",
        network={
            "name": "SmallCNN",
            "kwargs": {"widths": [8, 16]},
            "checkpoint": str(best),
            "freeze": ["features"],
        },
        training={"epochs": 1, "batch_size": 32, "max_steps": 2, "label_smoothing": 0.1},
        evaluation={"tta_flip": True},
    )
    learning = warm.card["training"]["transfer_learning"]
    assert learning["loaded"] == len(torch.load(best, weights_only=True)["model"])
    assert learning["skipped"] == [] and learning["missing"] == []
    assert warm.loop.stopped == "max_steps" and warm.loop.steps == 2
    # frozen features: the exported features equal the checkpoint's
    mirrored = script(warm.package / "model.pt")
    assert torch.equal(
        mirrored.state_dict()["network.features.0.weight"],
        torch.load(best, weights_only=True)["model"]["features.0.weight"],
    )
    # tta_flip: the export outputs the log of the mean of the image's and its mirror's
    # probabilities, and Grad-CAM's split is not declared (it would not match)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        plain = mirrored.network
        mean = 0.5 * (plain(x).softmax(dim=1) + plain(x.flip(-1)).softmax(dim=1))
        assert torch.allclose(mirrored(x).softmax(dim=1), mean, atol=1e-5)
    assert ModelPackage.open(warm.package).manifest.explain.feature_module is None
    cut = train(
        tmp_path / "cut", training={"epochs": 50, "batch_size": 32, "time_budget_minutes": 1e-6}
    )
    assert cut.loop.stopped == "time budget" and cut.loop.steps == 0
    assert any("cut short (time budget)" in item for item in cut.card["limitations"])
    patient = train(
        tmp_path / "stale",
        optimizer={"name": "sgd", "lr": 1e-12},
        training={
            "epochs": 20,
            "batch_size": 64,
            "early_stopping": {"metric": "loss", "patience": 2, "min_delta": 0.01},
        },
    )
    assert patient.loop.stopped == "early stopping"
    assert len(patient.loop.evaluations) == 3 and patient.loop.best_epoch == 1.0
