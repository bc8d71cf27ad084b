"""Training data: sources, patient-level splits, refusals, adjudication, preprocessing parity."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import torch

from radpilot.core.logging import ref
from radpilot.data.synth import RadiographOptions, Variation, pneumoniamnist_cases, radiograph_study
from radpilot.data.synth_perturb import PerturbationName, PerturbationSpec
from radpilot.models.preprocess import prepare
from radpilot.store.models import Read
from radpilot.training.config import TrainConfig, load_config
from radpilot.training.data import TrainingDataError, input_spec, scale_batch
from radpilot.training.data_cohort import adjudicate
from radpilot.training.data_npz import boxes_from_masks
from radpilot.training.run import load_dataset, run_training
from tests.conftest import shared_data
from tests.model_factory import image_dataset
from tests.training_helpers import classification_config, phantoms, write_config

NPZ = ("pneumoniamnist", "pneumoniamnist.npz")


def real_images(split: str, count: int, label: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    with np.load(shared_data(*NPZ)) as archive:
        images, labels = archive[f"{split}_images"], archive[f"{split}_labels"].reshape(-1)
    if label is not None:
        images, labels = images[labels == label], labels[labels == label]
    return images[:count], labels[:count]


def pooled_npz(tmp_path: Path, patients: list[str], labels: np.ndarray | None = None) -> Path:
    images, found = real_images("val", len(patients))
    path = tmp_path / "pool.npz"
    np.savez(
        path, images=images, labels=found if labels is None else labels, patients=np.array(patients)
    )
    return path


def config_for(tmp_path: Path, data: dict[str, object], **changes: object) -> TrainConfig:
    return load_config(write_config(tmp_path, classification_config(data=data, **changes)))


def test_official_splits_are_used_as_they_are_and_limit_keeps_both_classes(tmp_path: Path) -> None:
    config = config_for(tmp_path, {"limit": {"train": 40, "val": 20, "test": 10}})
    dataset = load_dataset(config)
    assert list(dataset.splits) == ["train", "val", "test"]
    assert [len(s) for s in dataset.splits.values()] == [40, 20, 10]
    assert dataset.split_method.startswith("predefined splits")
    train = dataset.splits["train"]
    assert train.labels is not None and set(train.labels.tolist()) == {0, 1}  # the array is sorted
    assert train.images.shape == (40, 1, 28, 28)
    assert float(train.images.min()) == 0.0 and float(train.images.max()) == 1.0
    again = load_dataset(config)
    assert torch.equal(again.splits["train"].images, train.images)  # seeded subset


def test_split_by_patient_keeps_patients_together_and_classes_in_every_split(
    tmp_path: Path,
) -> None:
    patients = [f"p{i // 3}" for i in range(90)]  # 30 patients, 3 images each
    path = pooled_npz(tmp_path, patients)
    config = config_for(
        tmp_path,
        {"npz": {"path": str(path), "patients_key": "patients"}, "limit": {}},
        split={"val_fraction": 0.3, "test_fraction": 0.2},
    )
    dataset = load_dataset(config)
    seen: dict[str, str] = {}
    for name, samples in dataset.splits.items():
        for patient in samples.patients:
            assert seen.setdefault(patient, name) == name
        assert samples.labels is not None and set(samples.labels.tolist()) == {0, 1}
    assert sum(len(s) for s in dataset.splits.values()) == 90
    counts = {n: len(set(s.patients)) for n, s in dataset.splits.items()}
    assert counts == {"train": 15, "val": 9, "test": 6}


def test_single_class_is_refused(tmp_path: Path) -> None:
    images, labels = real_images("train", 30, label=1)
    val_images, val_labels = real_images("val", 30)
    path = tmp_path / "one.npz"
    np.savez(
        path, train_images=images, train_labels=labels, val_images=val_images, val_labels=val_labels
    )
    config = config_for(tmp_path, {"npz": {"path": str(path)}, "limit": {}})
    with pytest.raises(
        TrainingDataError, match=r"train split holds a single class \('pneumonia', 30"
    ):
        load_dataset(config)


def test_empty_split_is_refused(tmp_path: Path) -> None:
    path = pooled_npz(tmp_path, ["same-patient"] * 20)
    config = config_for(
        tmp_path, {"npz": {"path": str(path), "patients_key": "patients"}, "limit": {}}
    )
    with pytest.raises(TrainingDataError, match=r"the (train|val) split is empty"):
        run_training(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written


def write_dicom_folder(
    tmp_path: Path, rows: list[tuple[int, str, str]], monochrome1: bool = False
) -> Path:
    """Radiographs (64 px) of PneumoniaMNIST val cases, and a CSV of (index, patient, split)."""
    folder = tmp_path / "dicom"
    folder.mkdir()
    cases = list(pneumoniamnist_cases(shared_data(*NPZ), "val", count=max(r[0] for r in rows) + 1))
    variation = (
        Variation(perturbations=(PerturbationSpec(PerturbationName.MONOCHROME1),))
        if monochrome1
        else None
    )
    with (folder / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["File", "Label", "Patient ID", "Split"])
        for index, patient, split in rows:
            study = radiograph_study(
                cases[index], options=RadiographOptions(size=64), variation=variation
            )
            name = f"{index}.dcm"
            study.datasets[0].save_as(folder / name, enforce_file_format=True)
            writer.writerow([name, ["normal", "pneumonia"][cases[index].label], patient, split])
    return folder


def test_patients_leaking_across_splits_are_refused_without_naming_them(tmp_path: Path) -> None:
    rows = [(i, f"patient-{i}", "train" if i < 12 else "val") for i in range(16)]
    rows[13] = (13, "patient-2", "val")  # patient-2 also has a training image
    folder = write_dicom_folder(tmp_path, rows)
    data = {
        "npz": None,
        "dicom": {"folder": str(folder), "labels_csv": str(folder / "labels.csv")},
        "limit": {},
    }
    with pytest.raises(TrainingDataError) as caught:
        load_dataset(config_for(tmp_path, data))
    message = str(caught.value)
    assert "1 patient(s) have images in both train and val" in message
    assert ref("patient-2") in message and "patient-2" not in message


def test_dicom_images_are_prepared_as_inference_prepares_them(tmp_path: Path) -> None:
    rows = [(i, f"p{i}", "train" if i < 10 else "val") for i in range(14)]
    folder = write_dicom_folder(tmp_path, rows, monochrome1=True)
    data = {
        "npz": None,
        "dicom": {"folder": str(folder), "labels_csv": str(folder / "labels.csv")},
        "limit": {},
    }
    config = config_for(tmp_path, data)
    dataset = load_dataset(config)
    assert dataset.split_method == "predefined splits (split column)"
    train = dataset.splits["train"]
    # the same 28 px source images, scaled the npz way, agree with the MONOCHROME1
    # 64 px DICOM radiographs prepared the DICOM way (up- and down-sampling aside);
    # were MONOCHROME1 not inverted, they would be each other's negative
    images, _ = real_images("val", 10)
    from_npz = scale_batch(images.astype(np.float64), input_spec(config))
    assert float((from_npz - train.images).abs().mean()) < 0.04
    assert float((1.0 - from_npz - train.images).abs().mean()) > 0.2
    import pydicom

    ds = pydicom.dcmread(folder / "0.dcm")
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert np.array_equal(prepare([ds], input_spec(config))[0].array, train.images[0].numpy())


def read(reader: str, value: int, day: int | None, pk: int) -> Read:
    at = None if day is None else dt.datetime(2024, 1, day, tzinfo=dt.UTC)
    return Read(id=pk, study_pk=1, finding="pneumonia", value=value, reader=reader, read_at=at)


def test_adjudication_majority_latest_read_per_reader_ties_excluded() -> None:
    assert adjudicate([read("a", 1, 1, 1), read("b", 1, 1, 2), read("c", 0, 1, 3)]) == 1
    assert adjudicate([read("a", 1, 1, 1), read("b", 0, 1, 2)]) is None  # tie
    # reader a changed their mind: only the latest read votes
    assert adjudicate([read("a", 1, 1, 1), read("a", 0, 5, 2), read("b", 0, 2, 3)]) == 0
    # a read without a time is older than any timed read
    assert adjudicate([read("a", 1, None, 1), read("a", 0, 1, 2)]) == 0
    assert adjudicate([read("a", 0, 1, 1)]) == 0


def test_boxes_from_masks_are_the_connected_components() -> None:
    masks = torch.zeros(2, 12, 16, dtype=torch.long)
    masks[0, 1:4, 2:6] = 1  # rows 1-3, cols 2-5
    masks[0, 7:11, 9:10] = 1  # a second lesion, separate
    masks[0, 5, 12] = 2  # one pixel of the second label
    masks[1, 3:5, 3:5] = 1
    masks[1, 5:7, 5:7] = 1  # touches the first diagonally: one 8-connected component
    boxes = boxes_from_masks(masks)
    assert sorted(boxes[0].tolist()) == [[2, 1, 6, 4, 0], [9, 7, 10, 11, 0], [12, 5, 13, 6, 1]]
    assert boxes[1].tolist() == [[3, 3, 7, 7, 0]]


def phantom_folder(tmp_path: Path, count: int) -> tuple[Path, np.ndarray]:
    """``count`` 64 px phantom images as DICOM files, and their masks."""
    folder = tmp_path / "phantoms"
    folder.mkdir()
    images, masks = phantoms(count, 64, seed=5)
    for index, image in enumerate(images):
        ds = image_dataset(image.clip(0, 65535).astype(np.uint16))
        ds.save_as(folder / f"{index}.dcm", enforce_file_format=True)
        np.save(folder / f"{index}.npy", masks[index])
    return folder, masks


def test_dicom_masks_and_boxes_are_brought_to_the_network_grid(tmp_path: Path) -> None:
    folder, masks = phantom_folder(tmp_path, 6)
    split = ["train"] * 4 + ["val"] * 2
    with (folder / "masks.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "mask", "split"])
        writer.writerows([f"{i}.dcm", f"{i}.npy", split[i]] for i in range(6))
    truth = boxes_from_masks(torch.from_numpy(masks))
    with (folder / "boxes.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "x0", "y0", "x1", "y1", "label", "split"])
        for i in range(6):
            for box in truth[i].tolist():
                writer.writerow([f"{i}.dcm", *box[:4], "lesion", split[i]])
        writer.writerow(["5.dcm", "", "", "", "", "", "val"])  # a row without a box
    common = {
        "input": {"size": [32, 32]},
        "augment": {"rotate_degrees": 0, "translate": 0},
        "card": {"critical_findings": []},
    }
    seg = classification_config(
        task="segmentation",
        network={"name": "UNet", "kwargs": {"channels": [4, 8], "strides": [2]}},
        data={
            "npz": None,
            "dicom": {"folder": str(folder), "labels_csv": str(folder / "masks.csv")},
            "labels": ["lesion"],
            "limit": {},
        },
        training={"epochs": 1, "imbalance": "none"},
        **common,
    )
    dataset = load_dataset(load_config(write_config(tmp_path, seg)))
    placed = torch.cat([dataset.splits["train"].masks, dataset.splits["val"].masks])  # type: ignore[list-item]
    assert torch.equal(placed, torch.from_numpy(masks[:, 1::2, 1::2]))  # nearest, pixel centres
    det = {**seg, "task": "detection", "network": {"name": "RetinaNet"}}
    det["data"] = {
        **seg["data"],
        "dicom": {"folder": str(folder), "labels_csv": str(folder / "boxes.csv")},
    }
    dataset = load_dataset(load_config(write_config(tmp_path, det)))
    boxes = dataset.splits["train"].boxes + dataset.splits["val"].boxes  # type: ignore[operator]
    for found, expected in zip(boxes, truth, strict=True):
        assert torch.allclose(found, expected * torch.tensor([0.5, 0.5, 0.5, 0.5, 1.0]))
