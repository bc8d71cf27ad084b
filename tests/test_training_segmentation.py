"""Segmentation training (MONAI UNet, Dice + CE) on disk phantoms with exact masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from radpilot.models.inference import load_model
from radpilot.models.package import ModelPackage
from radpilot.training.config import load_config
from radpilot.training.run import TrainResult, run_training
from tests.model_factory import image_dataset
from tests.training_helpers import phantoms, write_config, write_phantoms

SIZE = 32


def config(data: Path) -> dict[str, object]:
    return {
        "name": "lesion-seg",
        "version": "0.1.0",
        "task": "segmentation",
        "seed": 1,
        "threads": 1,
        "data": {"npz": {"path": str(data), "patients_key": "patients"}, "labels": ["lesion"]},
        "split": {"val_fraction": 0.25},
        "input": {"size": [SIZE, SIZE]},
        "augment": {"flip_lr": 0.5, "rotate_degrees": 10},
        "network": {
            "name": "UNet",
            "kwargs": {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1},
        },
        "optimizer": {"lr": 0.01},
        "schedule": {"name": "cosine", "warmup_fraction": 0.1},
        "training": {
            "epochs": 4,
            "batch_size": 8,
            "imbalance": "weighted_sampling",
            "ema_decay": 0.7,
        },
        "card": {"intended_use": "Tests only."},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    folder = tmp_path_factory.mktemp("segmenter")
    data = write_phantoms(folder / "phantoms.npz", 48, SIZE, empty_every=6)
    return run_training(load_config(write_config(folder, config(data))), folder / "run")


def test_loss_falls_and_dice_is_reported_with_a_ci(trained: TrainResult) -> None:
    losses = trained.loop.losses
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    card = json.loads((trained.package / "model-card.json").read_text())
    dice = card["validation"]["dice"]["lesion"]
    assert dice["method"].startswith("bootstrap") and dice["low"] <= dice["value"] <= dice["high"]
    assert dice["value"] > 0.5
    val = card["data"]["splits"]["val"]
    assert val["patients"] == 6 and val["images"] == 12  # two images per patient, kept together
    assert 0 < val["images_with_label"]["lesion"] < val["images"]  # every 6th image is empty


def test_package_segments_a_dicom_image_at_its_own_size(trained: TrainResult) -> None:
    package = ModelPackage.open(trained.package)
    manifest = package.manifest
    assert manifest.output.background_label == "background" and manifest.output.labels == ["lesion"]
    model = load_model(package)
    images, masks = phantoms(4, SIZE, seed=99)
    overlaps = []
    for image, truth in zip(images, masks, strict=True):
        big = np.kron(image, np.ones((2, 2))).clip(0, 65535).astype(np.uint16)  # 64 px source
        prediction = model.predict([image_dataset(big)])
        predicted = prediction.masks["lesion"][0]
        assert predicted.shape == (2 * SIZE, 2 * SIZE)
        expected = np.kron(truth, np.ones((2, 2), dtype=np.int64)) > 0
        overlaps.append(2 * (predicted & expected).sum() / (predicted.sum() + expected.sum()))
    assert np.mean(overlaps) > 0.5
