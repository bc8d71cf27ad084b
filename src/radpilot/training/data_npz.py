"""Training data from a NumPy archive (``data.npz``), e.g. PneumoniaMNIST's official splits.

Key layout, for ``images_key: images`` and ``targets_key: labels`` (the defaults)::

    train_images (N, H, W)   train_labels (N,)      official splits, used as they are
    val_images               val_labels
    test_images              test_labels            optional
    -- or, without splits --
    images (N, H, W)         labels (N,)            split by patient with the run's seed
    patients (N,)                                   optional (``patients_key``)

Segmentation targets are integer masks ``(N, H, W)``; detection targets are masks (each
connected component of value ``k`` is a box of ``labels[k - 1]``) or ``boxes``
``(N, K, 5)`` rows ``x0, y0, x1, y1, label`` in pixels, -1 rows as padding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the name every torch user knows

from radpilot.models.geometry import plan
from radpilot.training.config import TrainConfig
from radpilot.training.data import (
    SPLITS,
    Dataset,
    Samples,
    TrainingDataError,
    input_spec,
    place_boxes,
    place_mask,
    scale_batch,
    split_by_patient,
)

__all__ = ["boxes_from_masks", "load_npz"]


def _components(mask: torch.Tensor) -> torch.Tensor:
    """8-connected component ids of a boolean ``(N, H, W)`` mask (0 = background).

    Every foreground pixel starts with its own id and takes the largest id among its
    neighbours until nothing changes: a few dozen batched max-pools for small masks.
    """
    n, h, w = mask.shape
    fg = mask[:, None].float()
    ids = torch.arange(1, n * h * w + 1, dtype=torch.float32).reshape(n, 1, h, w) * fg
    while True:
        grown = F.max_pool2d(ids, 3, stride=1, padding=1) * fg
        if torch.equal(grown, ids):
            return ids[:, 0].long()
        ids = grown


def boxes_from_masks(masks: torch.Tensor) -> list[torch.Tensor]:
    """Boxes ``(B, 5)`` (``x0, y0, x1, y1, label``; pixel edges) of each mask's components.

    Value ``k > 0`` of the mask is label index ``k - 1``.
    """
    out: list[list[list[float]]] = [[] for _ in range(len(masks))]
    for value in sorted(int(v) for v in torch.unique(masks) if v > 0):
        ids = _components(masks == value)
        for image in range(len(masks)):
            for component in torch.unique(ids[image]).tolist():
                if component == 0:
                    continue
                rows, cols = torch.nonzero(ids[image] == component, as_tuple=True)
                out[image].append(
                    [
                        float(cols.min()),
                        float(rows.min()),
                        float(cols.max()) + 1.0,
                        float(rows.max()) + 1.0,
                        float(value - 1),
                    ]
                )
    return [torch.tensor(b, dtype=torch.float32).reshape(-1, 5) for b in out]


def _array(archive: Any, key: str, source: str) -> np.ndarray[Any, Any]:
    if key not in archive.files:
        raise TrainingDataError(
            f"{source}: no array {key!r} (the archive holds {sorted(archive.files)}); "
            "set data.npz.images_key / targets_key"
        )
    return np.asarray(archive[key])


def _images(values: np.ndarray[Any, Any], key: str) -> np.ndarray[Any, Any]:
    if values.ndim == 4 and values.shape[-1] == 1:
        values = values[..., 0]
    if values.ndim != 3:
        raise TrainingDataError(
            f"{key}: expected grey images (N, rows, cols), got shape {values.shape}"
        )
    return values


def _samples(config: TrainConfig, archive: Any, prefix: str, source: str) -> Samples:
    npz = config.data.npz
    assert npz is not None  # the caller checked
    task, labels = config.task, config.data.labels
    default_target = {"classification": "labels", "segmentation": "masks"}.get(task)
    if default_target is None:  # detection
        default_target = "boxes" if f"{prefix}boxes" in archive.files else "masks"
    target_key = prefix + (npz.targets_key or default_target)
    raw = _images(_array(archive, prefix + npz.images_key, source), prefix + npz.images_key)
    spec = input_spec(config)
    images = scale_batch(raw, spec)
    count = len(raw)
    if npz.patients_key:
        patients = [str(p) for p in _array(archive, prefix + npz.patients_key, source).reshape(-1)]
    else:
        patients = [f"{prefix or 'all_'}{i}" for i in range(count)]
    targets = _array(archive, target_key, source)
    if len(targets) != count or len(patients) != count:
        raise TrainingDataError(f"{source}: {target_key} or patients do not have {count} rows")
    samples = Samples(images=images, patients=patients)
    placement = plan(raw.shape[1:], spec.size, keep_aspect=spec.keep_aspect)
    if task == "classification":
        values = targets.reshape(count, -1)[:, 0].astype(np.int64)
        if values.min() < 0 or values.max() >= len(labels):
            raise TrainingDataError(
                f"{target_key}: class indices must be 0..{len(labels) - 1} for labels "
                f"{labels}, found {int(values.min())}..{int(values.max())}"
            )
        samples.labels = torch.from_numpy(values)
    elif targets.ndim == 3 and targets.shape[1:] == raw.shape[1:]:
        if targets.min() < 0 or targets.max() > len(labels):
            raise TrainingDataError(
                f"{target_key}: mask values must be 0 (background) .. {len(labels)}"
            )
        masks = torch.from_numpy(targets.astype(np.int64))
        if task == "segmentation":
            samples.masks = place_mask(masks, placement)
        else:
            samples.boxes = [place_boxes(b, placement) for b in boxes_from_masks(masks)]
    elif task == "detection" and targets.ndim == 3 and targets.shape[2] == 5:
        boxes = torch.from_numpy(targets.astype(np.float32))
        samples.boxes = [place_boxes(b[b[:, 4] >= 0], placement) for b in boxes]
    else:
        raise TrainingDataError(
            f"{target_key}: shape {targets.shape} is neither masks of the images' size "
            "nor (N, K, 5) boxes"
        )
    return samples


def load_npz(config: TrainConfig) -> Dataset:
    """The archive's splits (official ones when present, else split by patient).

    Raises
    ------
    TrainingDataError
        If an array is missing or does not fit the task.
    """
    npz = config.data.npz
    assert npz is not None  # the caller dispatches on the source
    source = npz.path.name
    with np.load(npz.path, allow_pickle=False) as archive:
        official = all(f"{s}_{npz.images_key}" in archive.files for s in ("train", "val"))
        if official:
            splits = {
                s: _samples(config, archive, f"{s}_", source)
                for s in SPLITS
                if f"{s}_{npz.images_key}" in archive.files
            }
            method = f"predefined splits of {source} ({', '.join(splits)})"
        else:
            pool = _samples(config, archive, "", source)
            splits = split_by_patient(pool, config.split, config.seed)
            method = (
                f"by patient, seed {config.seed}, val {config.split.val_fraction:g}, "
                f"test {config.split.test_fraction:g}"
                + (", stratified" if config.split.stratify else "")
            )
    return Dataset(splits, list(config.data.labels), config.task, f"npz: {source}", method)
