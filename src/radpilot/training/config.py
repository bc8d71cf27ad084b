"""The training config (``radpilot train CONFIG.yaml``): one pydantic model per section.

Every section forbids unknown keys, and the file is read through
:mod:`radpilot.core.yamlfile`, so that a typo, a wrong type or a missing file is refused
before anything is loaded, as ``config.yaml:LINE: section.key: problem``. Checks that
depend on the task (a detector's augmentation, a segmenter's early-stopping metric) sit on
the section they are about, and name the key in their message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from radpilot.core.yamlfile import load_yaml_model
from radpilot.models.manifest import AppliesTo, ModelName, ModelVersionText, Window
from radpilot.training.config_data import (
    DataConfig,
    ExistingFile,
    SplitConfig,
    Strict,
    relative_to,
)

__all__ = [
    "AugmentConfig",
    "CardConfig",
    "EvaluationConfig",
    "InputConfig",
    "NetworkConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainTask",
    "TrainingConfig",
    "load_config",
]

TrainTask = Literal["classification", "segmentation", "detection"]

#: The validation metric each task may stop early on (the first is the default).
METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("auc", "accuracy", "loss"),
    "segmentation": ("dice", "loss"),
    "detection": ("recall", "loss"),
}


class InputConfig(Strict):
    """The network input and the intensity handling; written into the manifest as is."""

    size: list[int] = Field(min_length=2, max_length=2)  # [rows, cols]
    channels: int = Field(1, ge=1, le=4)
    window: Window | None = None  # None: each image scaled by its own min and max
    keep_aspect: bool = False
    normalize: Literal["dataset", "none", "fixed"] = "dataset"
    mean: float | None = None  # with normalize: fixed
    std: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _fixed_needs_values(self) -> Self:
        if any(v < 8 for v in self.size):
            raise ValueError("size: every side must be at least 8 pixels")
        if (self.normalize == "fixed") != (self.mean is not None and self.std is not None):
            raise ValueError("give mean and std exactly when normalize is 'fixed'")
        return self


class AugmentConfig(Strict):
    """Random changes to training batches (never to validation or test)."""

    rotate_degrees: float = Field(0.0, ge=0.0, le=180.0)
    scale: float = Field(0.0, ge=0.0, lt=1.0)  # zoom in [1 - scale, 1 + scale]
    translate: float = Field(0.0, ge=0.0, le=0.5)  # fraction of the image
    flip_lr: float = Field(0.0, ge=0.0, le=1.0)  # probability
    flip_ud: float = Field(0.0, ge=0.0, le=1.0)
    brightness: float = Field(0.0, ge=0.0, le=1.0)  # additive, in [0, 1] units
    contrast: float = Field(0.0, ge=0.0, lt=1.0)  # factor in [1 - c, 1 + c]
    noise_std: float = Field(0.0, ge=0.0, le=1.0)
    padding: Literal["border", "zeros", "reflection"] = "border"  # outside a shifted image

    @property
    def spatial(self) -> bool:
        """Whether any rotation, zoom or shift is asked for."""
        return bool(self.rotate_degrees or self.scale or self.translate)


class NetworkConfig(Strict):
    """A network from ``monai.networks.nets`` by name and keyword arguments.

    Also ``SmallCNN`` (radpilot's own small classifier) and, for detection, ``RetinaNet``
    (MONAI's, on a small MONAI ResNet + FPN; see ``docs/training.md``). ``checkpoint``
    starts from local weights (a state dict, or a checkpoint ``radpilot train`` wrote);
    tensors whose name or shape do not match are left as initialised unless
    ``checkpoint_strict``. Nothing is ever downloaded: ``pretrained: true`` is refused.
    """

    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    checkpoint: ExistingFile | None = None
    checkpoint_strict: bool = False
    freeze: list[str] = Field(default_factory=list)  # parameter name prefixes


class OptimizerConfig(Strict):
    """The optimiser."""

    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)  # sgd
    nesterov: bool = False  # sgd


class ScheduleConfig(Strict):
    """The learning-rate schedule, stepped after every optimiser step."""

    name: Literal["constant", "cosine", "onecycle"] = "constant"
    warmup_fraction: float = Field(0.0, ge=0.0, lt=1.0)  # linear warm-up; onecycle: pct_start
    min_lr_fraction: float = Field(0.0, ge=0.0, le=1.0)  # cosine floor, fraction of lr


class EarlyStopping(Strict):
    """Stop when the validation metric has not improved for ``patience`` evaluations."""

    metric: str | None = None  # default: the task's first metric
    patience: int | None = Field(None, ge=1)  # None: never stop early
    min_delta: float = Field(0.0, ge=0.0)


class TrainingConfig(Strict):
    """The loop: length, batches, imbalance, regularisation, checkpoints."""

    epochs: int = Field(ge=1)
    batch_size: int = Field(32, ge=1)
    max_steps: int | None = Field(None, ge=1)  # stop after this many optimiser steps
    time_budget_minutes: float | None = Field(None, gt=0.0)
    val_every_steps: int | None = Field(None, ge=1)  # default: once per epoch
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    imbalance: Literal["none", "weighted_loss", "weighted_sampling"] = "none"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)  # classification
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0)  # per step; None: off
    grad_clip: float | None = Field(None, gt=0.0)
    channels_last: bool = False


class EvaluationConfig(Strict):
    """What is reported, and how operating points are chosen (on validation only)."""

    tta_flip: bool = False  # average with the left-right mirror (also in the exported model)
    sensitivity_target: float = Field(0.90, gt=0.0, lt=1.0)
    default_operating_point: Literal["youden", "high_sensitivity"] = "youden"
    bootstrap: int = Field(1000, ge=100, le=100_000)
    test: bool = True  # score the test split, if any, once, for the card
    max_detections: int = Field(20, ge=1, le=1000)
    score_threshold: float = Field(0.05, ge=0.0, lt=1.0)  # detection
    nms_threshold: float = Field(0.5, gt=0.0, le=1.0)  # detection
    iou_threshold: float = Field(0.5, gt=0.0, lt=1.0)  # detection: a hit


class CardConfig(Strict):
    """What the model card and manifest say about use (written by a person, not derived)."""

    intended_use: str = Field(min_length=1)
    limitations: list[str] = Field(default_factory=list)
    description: str = ""
    use_case: str | None = None
    applies_to: AppliesTo = Field(default_factory=AppliesTo)
    critical_findings: list[str] = Field(default_factory=list)


class TrainConfig(Strict):
    """A whole training run (``docs/training.md`` has an annotated example)."""

    schema_: Literal["radpilot.train/1"] = Field("radpilot.train/1", alias="schema")
    name: ModelName
    version: ModelVersionText = Field(min_length=1, max_length=64)
    task: TrainTask
    seed: int = Field(0, ge=0)
    threads: int | None = Field(None, ge=1, le=256)
    deterministic: bool = True
    data: DataConfig
    split: SplitConfig = Field(default_factory=SplitConfig)
    input: InputConfig
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    network: NetworkConfig
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    training: TrainingConfig
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    card: CardConfig

    model_config = Strict.model_config | {"populate_by_name": True}

    @field_validator("data")
    @classmethod
    def _data_fits_task(cls, value: DataConfig, info: ValidationInfo) -> DataConfig:
        task = info.data.get("task")
        if value.cohort is not None and task != "classification":
            raise ValueError(
                "cohort: a cohort's labels are study-level reads, usable for classification "
                "only; give segmentation masks or boxes with an npz or dicom source"
            )
        if task == "classification" and len(value.labels) < 2:
            raise ValueError("labels: a classifier needs at least two classes")
        if value.cohort is not None and len(value.labels) != 2:
            raise ValueError(
                "labels: a cohort has two: [absent, present], e.g. [normal, pneumonia]"
            )
        if task == "segmentation" and "background" in value.labels:
            raise ValueError("labels: list the foreground labels; 'background' is channel 0")
        return value

    @field_validator("augment")
    @classmethod
    def _augment_fits_task(cls, value: AugmentConfig, info: ValidationInfo) -> AugmentConfig:
        if info.data.get("task") == "detection" and value.spatial:
            raise ValueError(
                "rotate_degrees, scale, translate: not supported for detection (boxes "
                "would no longer be tight); use flip_lr, flip_ud and intensity changes"
            )
        return value

    @field_validator("network")
    @classmethod
    def _network_exists(cls, value: NetworkConfig, info: ValidationInfo) -> NetworkConfig:
        from radpilot.training.networks import check_network

        task = info.data.get("task")
        if task is not None:
            check_network(value.name, value.kwargs, task)
        return value

    @field_validator("training")
    @classmethod
    def _training_fits_task(cls, value: TrainingConfig, info: ValidationInfo) -> TrainingConfig:
        task = info.data.get("task")
        if task is None:
            return value
        metric = value.early_stopping.metric
        if metric is not None and metric not in METRICS[task]:
            raise ValueError(
                f"early_stopping.metric: {metric!r} is not one of {list(METRICS[task])} for {task}"
            )
        if task == "detection" and value.imbalance == "weighted_loss":
            raise ValueError(
                "imbalance: weighted_loss is not available for detection (RetinaNet's "
                "hard-negative sampling already balances anchors); use weighted_sampling"
            )
        if task != "classification" and value.label_smoothing:
            raise ValueError("label_smoothing: classification only")
        return value

    @field_validator("card")
    @classmethod
    def _card_names_labels(cls, value: CardConfig, info: ValidationInfo) -> CardConfig:
        data = info.data.get("data")
        labels = data.labels if isinstance(data, DataConfig) else []
        unknown = [f for f in value.critical_findings if f not in labels]
        if data is not None and unknown:
            raise ValueError(f"critical_findings: unknown label(s) {unknown}; labels are {labels}")
        return value

    @property
    def stop_metric(self) -> str:
        """The validation metric that selects the checkpoint and stops early."""
        return self.training.early_stopping.metric or METRICS[self.task][0]


def load_config(path: Path) -> TrainConfig:
    """Read and check a training config; relative paths start at its folder.

    Raises
    ------
    ManifestError
        If the file cannot be read, is not YAML, or a key is unknown, mistyped or names
        a missing file; the message reads ``path:line: key: problem``.
    """
    with relative_to(path.resolve().parent):
        return load_yaml_model(path, TrainConfig)
