"""Training data from DICOM files: a folder with a label CSV, or the installation's index.

Images go through :func:`radpilot.models.preprocess.prepare` with the manifest's input
section, i.e. exactly the code that prepares them at inference (modality LUT or rescale,
window or min-max, MONOCHROME1, colour, resize or letterbox). A file that cannot be
decoded is left out and counted; a file the CSV names that does not exist is an error.

CSV columns (``docs/training.md``): ``file``; ``label`` (classification); ``mask``
(segmentation: a ``.npy`` integer mask, relative to the CSV); ``x0, y0, x1, y1, label``
(detection: one box per row, in source pixels; empty coordinates for an image without
box); optional ``patient_id`` and ``split``.
"""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import torch
from pydicom.dataset import Dataset as DicomDataset
from pydicom.errors import InvalidDicomError

from radpilot.core.errors import ModelError
from radpilot.core.logging import ref
from radpilot.models.manifest import InputSpec
from radpilot.models.preprocess import prepare
from radpilot.training.config import TrainConfig
from radpilot.training.data import (
    SPLITS,
    Dataset,
    Samples,
    TrainingDataError,
    input_spec,
    place_boxes,
    place_mask,
    split_by_patient,
)

__all__ = ["Collected", "load_dicom_folder", "parse_age", "split_of"]

log = logging.getLogger(__name__)
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "validation": "val"}
_SPLIT_NAMES |= {"valid": "val", "tune": "val", "test": "test", "testing": "test"}


def parse_age(value: object) -> float | None:
    """Years from a DICOM Age String (``005Y``, ``018M``, ``003W``, ``010D``)."""
    match = re.fullmatch(r"(\d{1,3})([DWMY])", str(value or "").strip().upper())
    if not match:
        return None
    days = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}[match.group(2)]
    return round(int(match.group(1)) * days, 3)


@dataclass
class Collected:
    """Samples gathered one image at a time, before they become :class:`Samples`."""

    images: list[torch.Tensor] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    masks: list[torch.Tensor] = field(default_factory=list)
    boxes: list[torch.Tensor] = field(default_factory=list)
    sex: list[str | None] = field(default_factory=list)
    age: list[float | None] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)

    def add(
        self,
        ds: DicomDataset,
        spec: InputSpec,
        patient: str,
        split: str | None,
        *,
        label: int | None = None,
        mask: np.ndarray[tuple[int, ...], np.dtype[np.int64]] | None = None,
        boxes: torch.Tensor | None = None,
        sex: str | None = None,
        age: float | None = None,
    ) -> None:
        """Prepare every frame of ``ds`` as a sample with these targets."""
        try:
            samples = prepare([ds], spec)
        except (ModelError, ValueError, AttributeError, NotImplementedError) as exc:
            log.warning("left out %s: %s", ref(str(ds.get("SOPInstanceUID", ""))), exc)
            self.excluded["image could not be decoded"] += 1
            return
        for sample in samples:
            if mask is not None and mask.shape != sample.placement.source_shape:
                raise TrainingDataError(
                    f"a mask of shape {mask.shape} is given for an image of "
                    f"{sample.placement.source_shape}; masks match the image's rows x columns"
                )
            self.images.append(torch.from_numpy(sample.array))
            self.patients.append(patient)
            self.splits.append(split)
            self.sex.append(sex)
            self.age.append(age)
            if label is not None:
                self.labels.append(label)
            if mask is not None:
                self.masks.append(place_mask(mask, sample.placement))
            if boxes is not None:
                self.boxes.append(place_boxes(boxes, sample.placement))

    def samples(self, index: list[int] | None = None) -> Samples:
        """The collected samples (those at ``index``) as tensors."""
        rows = list(range(len(self.images))) if index is None else index
        return Samples(
            images=torch.stack([self.images[i] for i in rows]),
            patients=[self.patients[i] for i in rows],
            labels=torch.tensor([self.labels[i] for i in rows]) if self.labels else None,
            masks=torch.stack([self.masks[i] for i in rows]) if self.masks else None,
            boxes=[self.boxes[i] for i in rows] if self.boxes else None,
            sex=[self.sex[i] for i in rows],
            age=[self.age[i] for i in rows],
        )

    def dataset(self, config: TrainConfig, source: str) -> Dataset:
        """Split (predefined where every sample has a split, else by patient) and wrap.

        Raises
        ------
        TrainingDataError
            If no image could be used, or only some samples name a split.
        """
        if not self.images:
            raise TrainingDataError(f"{source}: no usable image ({dict(self.excluded)})")
        named = [s for s in self.splits if s is not None]
        if named and len(named) != len(self.splits):
            raise TrainingDataError(
                f"{source}: {len(self.splits) - len(named)} image(s) have no split while "
                "others do; give every row a split, or none"
            )
        if named:
            splits = {
                s: self.samples([i for i, v in enumerate(self.splits) if v == s])
                for s in SPLITS
                if s in named
            }
            method = "predefined splits (split column)"
        else:
            splits = split_by_patient(self.samples(), config.split, config.seed)
            method = f"by patient, seed {config.seed}, val {config.split.val_fraction:g}, " + (
                f"test {config.split.test_fraction:g}"
            )
        return Dataset(splits, list(config.data.labels), config.task, source, method, self.excluded)


def _column(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def _label_index(value: str, labels: list[str], where: str) -> int:
    text = value.strip()
    if text in labels:
        return labels.index(text)
    if text.isdigit() and int(text) < len(labels):
        return int(text)
    raise TrainingDataError(f"{where}: label {text!r} is not one of {labels} nor their index")


def split_of(row: dict[str, str], where: str) -> str | None:
    value = (row.get("split") or "").strip().lower()
    if not value:
        return None
    if value not in _SPLIT_NAMES:
        raise TrainingDataError(f"{where}: split {value!r} is not train, val or test")
    return _SPLIT_NAMES[value]


def _rows(csv_path: Path) -> dict[str, list[tuple[int, dict[str, str]]]]:
    with csv_path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "file" not in {_column(c) for c in reader.fieldnames}:
            raise TrainingDataError(f"{csv_path.name}: needs a header row with a 'file' column")
        by_file: dict[str, list[tuple[int, dict[str, str]]]] = {}
        for number, raw in enumerate(reader, start=2):
            row = {_column(k): (v or "") for k, v in raw.items() if k is not None}
            if not any(row.values()):
                continue
            by_file.setdefault(row["file"].strip(), []).append((number, row))
    return by_file


def _boxes(rows: list[tuple[int, dict[str, str]]], labels: list[str], name: str) -> torch.Tensor:
    boxes = []
    for number, row in rows:
        coords = [row.get(k, "").strip() for k in ("x0", "y0", "x1", "y1")]
        if not any(coords):
            continue
        where = f"{name}:{number}"
        try:
            x0, y0, x1, y1 = (float(c) for c in coords)
        except ValueError as exc:
            raise TrainingDataError(f"{where}: x0, y0, x1, y1 must be numbers") from exc
        if x1 <= x0 or y1 <= y0:
            raise TrainingDataError(f"{where}: a box needs x1 > x0 and y1 > y0")
        boxes.append([x0, y0, x1, y1, float(_label_index(row.get("label", "0"), labels, where))])
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 5)


def load_dicom_folder(config: TrainConfig) -> Dataset:
    """The images a label CSV names in a folder, with their labels, masks or boxes.

    Raises
    ------
    TrainingDataError
        If a named file is missing or not DICOM, a label or split is unknown, or a
        mask does not fit its image.
    """
    source = config.data.dicom
    assert source is not None  # the caller dispatches on the source
    spec, labels, task = input_spec(config), config.data.labels, config.task
    collected = Collected()
    name = source.labels_csv.name
    for file, rows in _rows(source.labels_csv).items():
        number, row = rows[0]
        where = f"{name}:{number}"
        path = source.folder / file
        if not path.is_file():
            raise TrainingDataError(f"{where}: file {file!r} is not in {source.folder}")
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError) as exc:
            raise TrainingDataError(f"{where}: {file!r} is not a DICOM file ({exc})") from exc
        patient = row.get("patient_id", "").strip() or str(ds.get("PatientID", "")) or file
        label, mask, boxes = None, None, None
        if task == "classification":
            label = _label_index(row.get("label", ""), labels, where)
        elif task == "segmentation":
            mask_path = source.labels_csv.parent / row.get("mask", "").strip()
            if not row.get("mask", "").strip() or not mask_path.is_file():
                raise TrainingDataError(f"{where}: mask {row.get('mask')!r} does not exist")
            mask = np.load(mask_path, allow_pickle=False).astype(np.int64)
        else:
            boxes = _boxes(rows, labels, name)
        collected.add(
            ds,
            spec,
            patient,
            split_of(row, where),
            label=label,
            mask=mask,
            boxes=boxes,
            sex=str(ds.get("PatientSex", "") or "") or None,
            age=parse_age(ds.get("PatientAge")),
        )
    return collected.dataset(config, f"dicom: {source.folder.name} + {name}")
