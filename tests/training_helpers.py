"""Small real data and configs for the training tests.

Classification uses real PneumoniaMNIST radiographs (a seeded, stratified subset through
``data.limit``); segmentation and detection use phantoms whose truth is known by
construction: bright disks (a lesion's intensity over noise) with their exact masks,
and, for detection, the masks' bounding boxes. Every config is a real YAML file read by
``load_config``, so the tests go through the same checks as ``radpilot train``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from tests.conftest import shared_data

__all__ = ["classification_config", "phantoms", "write_config", "write_phantoms"]


def phantoms(
    count: int, size: int, seed: int = 0, empty_every: int = 0
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """``count`` noisy images ``size`` x ``size`` with one or two bright disks, and masks.

    Every ``empty_every``-th image (if > 0) has no disk.
    """
    rng = np.random.default_rng(seed)
    images = rng.normal(100.0, 10.0, (count, size, size))
    masks = np.zeros((count, size, size), dtype=np.int64)
    yy, xx = np.mgrid[:size, :size]
    for i in range(count):
        if empty_every and i % empty_every == 0:
            continue
        for _ in range(int(rng.integers(1, 3))):
            r = int(rng.integers(max(2, size // 10), max(3, size // 5)))
            cy, cx = (int(v) for v in rng.integers(r, size - r, 2))
            disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            images[i][disk] += 80.0
            masks[i][disk] = 1
    return images.astype(np.float32), masks


def write_phantoms(path: Path, count: int, size: int, *, empty_every: int = 0) -> Path:
    """An npz without splits: ``images``, ``masks``, ``patients`` (two images each)."""
    images, masks = phantoms(count, size, empty_every=empty_every)
    patients = np.array([f"p{i // 2:03d}" for i in range(count)])
    np.savez(path, images=images, masks=masks, patients=patients)
    return path


def classification_config(**changes: Any) -> dict[str, Any]:
    """A quick PneumoniaMNIST classifier config (real images, seeded subset)."""
    config: dict[str, Any] = {
        "name": "pneumonia-test",
        "version": "0.1.0",
        "task": "classification",
        "seed": 3,
        "threads": 1,
        "data": {
            "npz": {"path": str(shared_data("pneumoniamnist", "pneumoniamnist.npz"))},
            "labels": ["normal", "pneumonia"],
            "limit": {"train": 192, "val": 96, "test": 96},
        },
        "input": {"size": [28, 28]},
        "augment": {"rotate_degrees": 5, "translate": 0.05},
        "network": {"name": "SmallCNN", "kwargs": {"widths": [8, 16]}},
        "optimizer": {"name": "adamw", "lr": 0.01},
        "training": {"epochs": 4, "batch_size": 32, "imbalance": "weighted_loss"},
        "card": {
            "intended_use": "Tests only.",
            "limitations": ["Trained for seconds."],
            "critical_findings": ["pneumonia"],
        },
    }
    merged = copy.deepcopy(config)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def write_config(folder: Path, config: dict[str, Any], name: str = "train.yaml") -> Path:
    """``config`` as a YAML file in ``folder``."""
    path = folder / name
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
