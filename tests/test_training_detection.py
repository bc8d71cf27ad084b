"""Detection training (MONAI RetinaNet) on disk phantoms whose boxes are known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from radpilot.models.inference import load_model
from radpilot.models.package import ModelPackage
from radpilot.training.config import load_config
from radpilot.training.data_npz import boxes_from_masks
from radpilot.training.detection_net import DetectionExport, RadpilotDetector
from radpilot.training.run import TrainResult, run_training
from tests.model_factory import image_dataset
from tests.training_helpers import phantoms, write_config, write_phantoms

SIZE = 32


def config(data: Path) -> dict[str, object]:
    return {
        "name": "lesion-det",
        "version": "0.1.0",
        "task": "detection",
        "seed": 2,
        "threads": 1,
        "data": {"npz": {"path": str(data), "patients_key": "patients"}, "labels": ["lesion"]},
        "split": {"val_fraction": 0.25},
        "input": {"size": [SIZE, SIZE]},
        "augment": {"flip_lr": 0.5, "flip_ud": 0.5},
        "network": {"name": "RetinaNet", "kwargs": {"anchor_shapes": [[6, 6], [12, 12]]}},
        "optimizer": {"lr": 0.002},
        "training": {"epochs": 3, "batch_size": 8},
        "evaluation": {"max_detections": 10},
        "card": {"intended_use": "Tests only."},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    folder = tmp_path_factory.mktemp("detector")
    data = write_phantoms(folder / "phantoms.npz", 32, SIZE, empty_every=4)
    return run_training(load_config(write_config(folder, config(data))), folder / "run")


def test_loss_falls_and_boxes_are_reported(trained: TrainResult) -> None:
    losses = trained.loop.losses
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3])
    card = json.loads((trained.package / "model-card.json").read_text())
    val = card["validation"]
    names = [p["name"] for p in val["operating_points"]]
    assert names[0] == "youden" and set(names) == {"youden", "high_sensitivity", "box_f1"}
    for point in val["operating_points"]:
        recall = point["box_recall"]
        assert recall["n"] == val["boxes"] and recall["low"] <= recall["value"] <= recall["high"]
    assert val["image_auc"]["lesion"]["method"] == "DeLong"
    assert card["data"]["splits"]["train"]["images_without_box"] > 0


def test_export_agrees_with_monai_inference(trained: TrainResult) -> None:
    detector = trained.loop.model
    assert isinstance(detector, RadpilotDetector)
    images, _ = phantoms(6, SIZE, seed=7)
    x = torch.from_numpy((images - images.min()) / (images.max() - images.min()))[:, None].float()
    exporter = DetectionExport(
        detector, [SIZE, SIZE], 1, max_detections=10, score_threshold=0.0, nms_threshold=0.5
    )
    detector.eval()
    with torch.no_grad():
        ours = exporter.eval()(x)
        monai = detector(x)
    for rows, theirs in zip(ours, monai, strict=True):
        best = int(torch.argmax(theirs["labels_scores"]))
        assert float(rows[0, 4]) == pytest.approx(float(theirs["labels_scores"][best]), abs=1e-5)
        r0, c0, r1, c1 = theirs["boxes"][best].tolist()  # MONAI: array axis order
        assert rows[0, :4].tolist() == pytest.approx([c0, r0, c1, r1], abs=1e-3)


def test_package_finds_the_lesions_of_a_dicom_image(trained: TrainResult) -> None:
    model = load_model(ModelPackage.open(trained.package))
    images, masks = phantoms(6, SIZE, seed=11)
    found = total = 0
    for image, mask in zip(images, masks, strict=True):
        big = np.kron(image, np.ones((2, 2))).clip(0, 65535).astype(np.uint16)  # 64 px source
        prediction = model.predict([image_dataset(big)])
        truth = boxes_from_masks(torch.from_numpy(mask)[None])[0] * torch.tensor([2, 2, 2, 2, 1])
        kept = [b for b in prediction.boxes if b.score >= 0.3]
        for t in truth.tolist():
            total += 1
            hit = any(
                min(b.x1, t[2]) - max(b.x0, t[0]) > 0.5 * (t[2] - t[0])
                and min(b.y1, t[3]) - max(b.y0, t[1]) > 0.5 * (t[3] - t[1])
                for b in kept
            )
            found += hit
    assert found >= 0.6 * total
