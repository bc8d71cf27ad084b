"""The ``data`` and ``split`` sections of a training config (``docs/training.md``).

Exactly one source is named under ``data``, as a key of its own, so that a problem is
reported at the key the file has (``data.npz.path``)::

    data:
      npz: {path: pneumoniamnist.npz}          # or dicom: {...} or cohort: {...}
      labels: [normal, pneumonia]

Relative paths are relative to the config file's folder; files and folders must exist.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "CohortSource",
    "DataConfig",
    "DicomSource",
    "ExistingDir",
    "ExistingFile",
    "NpzSource",
    "SplitConfig",
    "SplitName",
    "relative_to",
]

SplitName = Literal["train", "val", "test"]

_BASE: ContextVar[Path | None] = ContextVar("radpilot_training_config_base", default=None)


@contextlib.contextmanager
def relative_to(folder: Path) -> Iterator[None]:
    """Resolve relative paths in configs validated inside this block against ``folder``."""
    token = _BASE.set(folder)
    try:
        yield
    finally:
        _BASE.reset(token)


def _resolve(value: Path) -> Path:
    value = value.expanduser()
    base = _BASE.get()
    if not value.is_absolute() and base is not None:
        value = base / value
    return value


def _existing_file(value: Path) -> Path:
    path = _resolve(value)
    if not path.is_file():
        raise ValueError(f"no such file: {path} (relative paths start at the config's folder)")
    return path


def _existing_dir(value: Path) -> Path:
    path = _resolve(value)
    if not path.is_dir():
        raise ValueError(f"no such folder: {path} (relative paths start at the config's folder)")
    return path


ExistingFile = Annotated[Path, AfterValidator(_existing_file)]
ExistingDir = Annotated[Path, AfterValidator(_existing_dir)]


class Strict(BaseModel):
    """Unknown keys are errors; values are immutable once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NpzSource(Strict):
    """A NumPy archive.

    With official splits the archive holds ``{split}_{images_key}`` and
    ``{split}_{targets_key}`` for ``train``, ``val`` and optionally ``test``, and they are
    used as they are; otherwise ``images_key`` and ``targets_key`` and the split is drawn
    by patient. Targets: class indices (classification), integer masks of the image's
    shape with 0 = background and ``k`` = ``labels[k - 1]`` (segmentation, and detection,
    whose boxes are the masks' connected components), or ``(N, K, 5)`` boxes
    ``x0, y0, x1, y1, label`` in pixels, rows of -1 padding (detection with
    ``targets_key: boxes``). ``patients_key`` names per-image patient ids; without it
    every image counts as its own patient.
    """

    path: ExistingFile
    images_key: str = "images"
    targets_key: str | None = None  # default: labels / masks
    patients_key: str | None = None


class DicomSource(Strict):
    """A folder of DICOM files and a CSV naming their labels.

    Columns: ``file`` (relative to ``folder``); ``label`` (a class name or index;
    classification), ``mask`` (a ``.npy`` integer mask of the image's rows x columns,
    relative to the CSV; segmentation) or ``x0, y0, x1, y1, label`` (one box per row in
    source pixels, empty for an image without boxes; detection); optional ``patient_id``
    (else the file's Patient ID) and ``split`` (train / val / test: predefined splits).
    """

    folder: ExistingDir
    labels_csv: ExistingFile


class CohortSource(Strict):
    """Studies of this installation's index with their reads of one finding.

    Adjudication: each reader's latest read of the study is one vote; the majority of
    votes is the label; a tie excludes the study. Every image of the study's selected
    series is a sample carrying the study's label.
    """

    finding: str = Field(min_length=1)
    modalities: list[str] = Field(default_factory=list)  # empty: every modality
    readers: list[str] = Field(default_factory=list)  # empty: every reader
    split_attribute: str | None = None  # a case attribute holding train / val / test


class DataConfig(Strict):
    """Where the images and labels come from."""

    npz: NpzSource | None = None
    dicom: DicomSource | None = None
    cohort: CohortSource | None = None
    labels: list[str] = Field(min_length=1)
    limit: dict[SplitName, int] = Field(default_factory=dict)  # N per split, seeded, stratified

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        named = [n for n in ("npz", "dicom", "cohort") if getattr(self, n) is not None]
        if len(named) != 1:
            raise ValueError(
                f"name exactly one source (npz, dicom or cohort), not {named or 'none'}"
            )
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        if any(v < 1 for v in self.limit.values()):
            raise ValueError("limit: every count must be at least 1")
        return self

    @property
    def kind(self) -> str:
        """``npz``, ``dicom`` or ``cohort``."""
        return next(n for n in ("npz", "dicom", "cohort") if getattr(self, n) is not None)


class SplitConfig(Strict):
    """How a source without predefined splits is split, by patient, with the run's seed."""

    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    stratify: bool = True  # keep each class's share of patients in every split

    @model_validator(mode="after")
    def _room_for_training(self) -> Self:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% to train")
        return self
