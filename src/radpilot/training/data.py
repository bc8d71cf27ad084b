"""Training data in memory: samples per split, the patient-level split, and its checks.

Every source (:mod:`~radpilot.training.data_npz`, :mod:`~radpilot.training.data_dicom`,
:mod:`~radpilot.training.data_cohort`) brings its images to the network's input size
and to [0, 1] exactly as :mod:`radpilot.models.preprocess` will at inference (window or
per-image min-max, MONOCHROME1 inverted, resize or letterbox), so that training and the
packaged model see the same pixels. Normalisation is applied later, with values the
manifest records. Whole splits are kept as tensors: batches are slices, not Python loops.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 - the name every torch user knows

from radpilot.core.errors import RadpilotError
from radpilot.core.logging import ref
from radpilot.models.geometry import Placement, place, plan
from radpilot.models.manifest import InputSpec
from radpilot.training.config import TrainConfig
from radpilot.training.config_data import SplitConfig, SplitName

__all__ = [
    "Dataset",
    "Samples",
    "TrainingDataError",
    "check_dataset",
    "place_boxes",
    "place_mask",
    "scale_batch",
    "split_by_patient",
]

SPLITS = ("train", "val", "test")


class TrainingDataError(RadpilotError):
    """The data cannot train a model as configured (one class, an empty split, a leak)."""


@dataclass
class Samples:
    """One split at the network's input size, scaled to [0, 1], not yet normalised.

    Attributes
    ----------
    images
        ``(N, C, H, W)`` float32.
    labels
        ``(N,)`` int64 class indices (classification).
    masks
        ``(N, H, W)`` int64, 0 background, ``k`` the k-th label (segmentation).
    boxes
        Per image ``(B, 5)`` float32 ``x0, y0, x1, y1, label`` in network pixels
        (column, row; detection).
    patients
        A patient key per image (pseudonymised where intake de-identifies).
    """

    images: torch.Tensor
    patients: list[str]
    labels: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    boxes: list[torch.Tensor] | None = None
    sex: list[str | None] = field(default_factory=list)
    age: list[float | None] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: Sequence[int]) -> Samples:
        """The samples at ``index``, in that order."""
        rows = torch.as_tensor(list(index), dtype=torch.long)
        return Samples(
            images=self.images[rows],
            patients=[self.patients[i] for i in index],
            labels=None if self.labels is None else self.labels[rows],
            masks=None if self.masks is None else self.masks[rows],
            boxes=None if self.boxes is None else [self.boxes[i] for i in index],
            sex=[self.sex[i] for i in index] if self.sex else [],
            age=[self.age[i] for i in index] if self.age else [],
        )

    def strata(self) -> torch.Tensor:
        """A class per sample for stratifying and weighted sampling: the label, or
        whether the image holds any foreground (masks) or box."""
        if self.labels is not None:
            return self.labels
        if self.masks is not None:
            return (self.masks.flatten(1) > 0).any(dim=1).long()
        if self.boxes is not None:
            return torch.tensor([int(len(b) > 0) for b in self.boxes], dtype=torch.long)
        return torch.zeros(len(self), dtype=torch.long)


@dataclass
class Dataset:
    """The splits, what they were made from, and what was left out and why."""

    splits: dict[str, Samples]
    labels: list[str]
    task: str
    source: str
    split_method: str
    excluded: Counter[str] = field(default_factory=Counter)

    def limited(self, limit: Mapping[SplitName, int], seed: int) -> Dataset:
        """Each split cut to ``limit[split]`` samples drawn with ``seed``, every class
        (or foreground / background) keeping its share, and at least one sample."""
        wanted = {str(name): count for name, count in limit.items()}
        splits = {
            name: _draw(s, wanted[name], seed) if wanted.get(name, len(s)) < len(s) else s
            for name, s in self.splits.items()
        }
        return replace(self, splits=splits)


def _draw(samples: Samples, count: int, seed: int) -> Samples:
    rng = np.random.default_rng(seed)
    strata = samples.strata().numpy()
    chosen: list[int] = []
    for stratum in np.unique(strata):
        members = np.nonzero(strata == stratum)[0]
        share = max(1, round(count * len(members) / len(strata)))
        chosen += rng.permutation(members)[:share].tolist()
    return samples.subset(sorted(chosen)[: max(count, len(np.unique(strata)))])


def input_spec(config: TrainConfig) -> InputSpec:
    """The manifest's input section before normalisation values are known."""
    return InputSpec(
        dimensions=2,
        size=list(config.input.size),
        channels=config.input.channels,
        window=config.input.window,
        keep_aspect=config.input.keep_aspect,
    )


def scale_batch(values: npt.NDArray[np.float64], spec: InputSpec) -> torch.Tensor:
    """Images ``(N, rows, cols)`` of modality values to ``(N, C, *size)`` in [0, 1].

    The same steps as :func:`radpilot.models.preprocess.prepare` for 2D images without
    a DICOM header (no rescale, MONOCHROME2), done for the whole array at once.
    """
    values = np.asarray(values, dtype=np.float64)
    if spec.window is not None:
        low = np.full(len(values), spec.window.center - spec.window.width / 2)
        high = np.full(len(values), spec.window.center + spec.window.width / 2)
    else:
        low, high = values.min(axis=(1, 2)), values.max(axis=(1, 2))
    span = (high - low)[:, None, None]
    safe = np.where(span > 0, span, 1.0)
    unit = np.where(span > 0, np.clip((values - low[:, None, None]) / safe, 0.0, 1.0), 0.0)
    placement = plan(unit.shape[1:], spec.size, keep_aspect=spec.keep_aspect)
    placed = place(unit.astype(np.float32), placement)  # images stand in the channel axis
    tensor = torch.from_numpy(placed)[:, None]
    return tensor.repeat(1, spec.channels, 1, 1).contiguous()


def place_mask(mask: npt.NDArray[np.integer] | torch.Tensor, placement: Placement) -> torch.Tensor:
    """An integer mask ``(..., rows, cols)`` on the network grid (nearest neighbour)."""
    tensor = torch.as_tensor(np.asarray(mask), dtype=torch.float32)
    lead = tensor.shape[:-2]
    tensor = tensor.reshape(1, -1, *tensor.shape[-2:])
    content = placement.content_shape
    if content != placement.source_shape:
        tensor = F.interpolate(tensor, size=content, mode="nearest-exact")
    out = torch.zeros(1, tensor.shape[1], *placement.net_shape)
    top, left = int(placement.offset[0]), int(placement.offset[1])
    r0, c0 = max(0, top), max(0, left)
    r1 = min(placement.net_shape[0], top + content[0])
    c1 = min(placement.net_shape[1], left + content[1])
    out[:, :, r0:r1, c0:c1] = tensor[:, :, r0 - top : r1 - top, c0 - left : c1 - left]
    return out.reshape(*lead, *placement.net_shape).round().long()


def place_boxes(boxes: torch.Tensor, placement: Placement) -> torch.Tensor:
    """Boxes ``(B, 5)`` in source pixels to network pixels, clipped; empty ones dropped."""
    if len(boxes) == 0:
        return boxes.reshape(0, 5).float()
    out = boxes.clone().float()
    rows, cols = placement.net_shape
    out[:, [0, 2]] = (out[:, [0, 2]] * placement.scale[1] + placement.offset[1]).clamp(0, cols)
    out[:, [1, 3]] = (out[:, [1, 3]] * placement.scale[0] + placement.offset[0]).clamp(0, rows)
    keep = (out[:, 2] - out[:, 0] >= 1.0) & (out[:, 3] - out[:, 1] >= 1.0)
    return out[keep]


def _patient_strata(samples: Samples) -> dict[str, int]:
    strata = samples.strata().tolist()
    by_patient: dict[str, int] = {}
    for patient, stratum in zip(samples.patients, strata, strict=True):
        by_patient[patient] = max(by_patient.get(patient, 0), int(stratum))
    return by_patient


def split_by_patient(samples: Samples, config: SplitConfig, seed: int) -> dict[str, Samples]:
    """Split ``samples`` so that every patient's images land in exactly one split.

    Patients are shuffled with ``seed`` (within each stratum when ``stratify``: the
    highest class among a patient's images), then the first ``test_fraction`` go to
    test, the next ``val_fraction`` to validation, the rest to training.
    """
    strata = _patient_strata(samples)
    groups: dict[int, list[str]] = {}
    for patient in sorted(strata):
        groups.setdefault(strata[patient] if config.stratify else 0, []).append(patient)
    rng = np.random.default_rng(seed)
    assigned: dict[str, str] = {}
    for stratum in sorted(groups):
        patients = groups[stratum]
        order = [patients[i] for i in rng.permutation(len(patients))]
        n_test = round(len(order) * config.test_fraction)
        n_val = round(len(order) * config.val_fraction)
        for position, patient in enumerate(order):
            split = "test" if position < n_test else "val" if position < n_test + n_val else "train"
            assigned[patient] = split
    out = {}
    for split in SPLITS:
        index = [i for i, p in enumerate(samples.patients) if assigned[p] == split]
        if index or split != "test":
            out[split] = samples.subset(index)
    return out


def _leaks(splits: dict[str, Samples]) -> str | None:
    names = [n for n in SPLITS if n in splits]
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared = set(splits[first].patients) & set(splits[second].patients)
            if shared:
                shown = ", ".join(ref(p) for p in sorted(shared)[:3])
                return (
                    f"{len(shared)} patient(s) have images in both {first} and {second} "
                    f"(digests {shown}); a patient's images must stay in one split: fix the "
                    "split column / keys, or let radpilot split by patient"
                )
    return None


def check_dataset(dataset: Dataset) -> None:
    """Refuse data that cannot train or validate a model, with the reason.

    Raises
    ------
    TrainingDataError
        If train or val is empty, a patient has images in two splits, or the training
        or validation split holds one class only (classification) or no foreground or
        box (segmentation, detection).
    """
    for name in ("train", "val"):
        if name not in dataset.splits or len(dataset.splits[name]) == 0:
            raise TrainingDataError(
                f"the {name} split is empty ({dataset.split_method}); add data, lower "
                "the data.limit, or change split fractions"
            )
    leak = _leaks(dataset.splits)
    if leak:
        raise TrainingDataError(leak)
    for name in ("train", "val"):
        samples = dataset.splits[name]
        present = sorted(set(samples.strata().tolist()))
        if dataset.task == "classification" and len(present) < 2:
            only = dataset.labels[present[0]] if present else "none"
            raise TrainingDataError(
                f"the {name} split holds a single class ({only!r}, {len(samples)} images); "
                "a classifier needs every split to hold at least two classes"
            )
        if dataset.task != "classification" and present == [0]:
            what = "foreground pixel" if dataset.task == "segmentation" else "box"
            raise TrainingDataError(
                f"the {name} split holds no {what} in {len(samples)} images; nothing to learn"
            )
