"""What the training loop asks of a task (classification, segmentation, detection).

A task builds the network, computes the training loss of a batch, scores a split for
model selection, writes the final report (metrics with confidence intervals, operating
points) and wraps the trained network for TorchScript export.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from radpilot.models.manifest import OperatingPoint, OutputSpec
from radpilot.training.config import TrainConfig
from radpilot.training.data import Dataset, Samples

__all__ = ["Batch", "Normalizer", "Report", "Task", "chunks"]

EVAL_BATCH = 256


@dataclass(frozen=True)
class Normalizer:
    """``(x - mean) / std`` after scaling to [0, 1]: the manifest's normalisation."""

    mean: float
    std: float

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise a batch."""
        return (images - self.mean) / self.std


@dataclass
class Batch:
    """Normalised images and the targets of the same samples."""

    images: torch.Tensor
    labels: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    boxes: list[torch.Tensor] | None = None


@dataclass
class Report:
    """The final evaluation: what the card shows and what the manifest records."""

    metrics: dict[str, Any]  # per split ("val", "test"): JSON-ready metrics with CIs
    operating_points: list[OperatingPoint]
    default_operating_point: str | None


def chunks(samples: Samples, normalize: Normalizer) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, normalised images)`` in evaluation-sized chunks."""
    for start in range(0, len(samples), EVAL_BATCH):
        yield start, normalize(samples.images[start : start + EVAL_BATCH])


class Task(abc.ABC):
    """One kind of model: network, loss, evaluation, report, export."""

    #: Validation metrics where lower is better.
    lower_is_better = frozenset({"loss"})

    def __init__(self, config: TrainConfig, dataset: Dataset, normalize: Normalizer) -> None:
        self.config = config
        self.dataset = dataset
        self.labels = list(dataset.labels)
        self.normalize = normalize

    @abc.abstractmethod
    def build(self) -> nn.Module:
        """The network to train (weights freshly initialised from the seed)."""

    @abc.abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The training loss of one batch (model in train mode)."""

    @abc.abstractmethod
    def evaluate(self, model: nn.Module, samples: Samples) -> dict[str, float]:
        """Validation metrics for model selection; includes ``loss``."""

    @abc.abstractmethod
    def report(self, model: nn.Module, splits: dict[str, Samples]) -> Report:
        """Metrics with CIs on ``val`` (and ``test`` if given); operating points from val."""

    @abc.abstractmethod
    def export_module(self, model: nn.Module) -> nn.Module:
        """The module to trace: normalised images in, the manifest's output format out."""

    @abc.abstractmethod
    def output_spec(self, report: Report) -> OutputSpec:
        """The manifest's output section."""

    def explain_modules(self, model: nn.Module) -> tuple[str, str] | None:
        """``(feature_module, head_module)`` for Grad-CAM on the export, if it has them."""
        return None

    def trainable(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters the optimiser updates."""
        return [p for p in model.parameters() if p.requires_grad]
