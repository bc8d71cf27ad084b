"""Segmentation: a MONAI network (UNet by default) with one channel per label plus
background, trained with MONAI's Dice + cross-entropy loss.

The exported network outputs logits ``(N, labels + 1, H, W)``, channel 0 the background
(``background_label: background`` and ``activation: softmax`` in the manifest), so the
runtime's arg-max gives each pixel one label. Validation: Dice per label and image
(MONAI's ``DiceMetric``; an image where a label is absent in both truth and prediction
does not count for that label), mean over images with a bootstrap CI.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from monai.losses.dice import DiceCELoss
from monai.metrics.meandice import DiceMetric
from torch import nn

from radpilot.models.manifest import Activation, OutputSpec
from radpilot.training.data import Samples
from radpilot.training.networks import build_network
from radpilot.training.tasks import Batch, Report, Task, chunks
from radpilot.validation.stats import bootstrap_mean

__all__ = ["BACKGROUND", "FlipAverageMap", "SegmentationTask"]

BACKGROUND = "background"


class FlipAverageMap(nn.Module):
    """Log of the mean softmax map of an image and (mirrored back) of its mirror."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``(N, C, H, W)``."""
        a = self.network(x).softmax(dim=1)
        b = self.network(x.flip(-1)).softmax(dim=1).flip(-1)
        out: torch.Tensor = (0.5 * (a + b)).clamp_min(1e-12).log()
        return out


class SegmentationTask(Task):
    """Dice + cross-entropy; Dice per label for selection and the report."""

    def build(self) -> nn.Module:
        """The configured network with ``labels + 1`` output channels."""
        weight = None
        if self.config.training.imbalance == "weighted_loss":
            masks = self.dataset.splits["train"].masks
            assert masks is not None  # segmentation samples carry masks
            counts = torch.bincount(masks.flatten(), minlength=len(self.labels) + 1)
            weight = (counts.sum() / (counts.clamp_min(1) * len(counts))).float()
        self.criterion = DiceCELoss(to_onehot_y=True, softmax=True, weight=weight)
        net = self.config.network
        return build_network(net.name, net.kwargs, self.config.input.channels, len(self.labels) + 1)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Dice + cross-entropy of the batch."""
        assert batch.masks is not None
        out: torch.Tensor = self.criterion(model(batch.images), batch.masks[:, None])
        return out

    @torch.no_grad()
    def _dice(self, model: nn.Module, samples: Samples) -> tuple[np.ndarray[Any, Any], float]:
        """Dice ``(N, labels)`` (NaN where a label is absent in truth and prediction), loss."""
        assert samples.masks is not None
        model.eval()
        module = FlipAverageMap(model) if self.config.evaluation.tta_flip else model
        metric = DiceMetric(include_background=False, reduction="none", ignore_empty=False)
        classes = len(self.labels) + 1
        scores, losses = [], []
        for start, x in chunks(samples, self.normalize):
            logits = module(x)
            truth = samples.masks[start : start + len(x)]
            losses.append(float(self.criterion(logits, truth[:, None])) * len(x))
            pred = nn.functional.one_hot(logits.argmax(dim=1), classes).permute(0, 3, 1, 2)
            ref = nn.functional.one_hot(truth, classes).permute(0, 3, 1, 2)
            dice = torch.as_tensor(metric(pred, ref)).double()
            both_empty = (pred[:, 1:].flatten(2).sum(-1) == 0) & (
                ref[:, 1:].flatten(2).sum(-1) == 0
            )
            scores.append(torch.where(both_empty, torch.nan, dice))
        return torch.cat(scores).numpy(), sum(losses) / max(len(samples), 1)

    def evaluate(self, model: nn.Module, samples: Samples) -> dict[str, float]:
        """Mean Dice over labels and images, and the loss."""
        dice, loss = self._dice(model, samples)
        finite = dice[np.isfinite(dice)]
        return {"dice": float(finite.mean()) if finite.size else 0.0, "loss": loss}

    def report(self, model: nn.Module, splits: dict[str, Samples]) -> Report:
        """Dice per label with bootstrap CIs, per split."""
        metrics: dict[str, Any] = {}
        for name, samples in splits.items():
            dice, _ = self._dice(model, samples)
            per_label = {}
            for k, label in enumerate(self.labels):
                values = dice[:, k][np.isfinite(dice[:, k])]
                per_label[label] = bootstrap_mean(
                    values, self.config.evaluation.bootstrap, self.config.seed
                ).to_dict()
            metrics[name] = {"n": len(samples), "dice": per_label}
        return Report(metrics, [], None)

    def export_module(self, model: nn.Module) -> nn.Module:
        """The network, mirror-averaged with ``tta_flip``."""
        return FlipAverageMap(model) if self.config.evaluation.tta_flip else model

    def output_spec(self, report: Report) -> OutputSpec:
        """Labels with a background channel first, softmax."""
        return OutputSpec(
            labels=self.labels,
            activation=Activation.SOFTMAX,
            background_label=BACKGROUND,
            critical_findings=list(self.config.card.critical_findings),
        )
