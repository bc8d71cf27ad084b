"""Classification: cross-entropy on logits, softmax scores, AUC, operating points.

The exported network outputs logits ``(N, labels)`` with ``activation: softmax``. With
``evaluation.tta_flip`` it outputs the log of the mean of the image's and its mirror's
probabilities, which softmax turns back into that mean, so the runtime needs nothing new.
Binary models report and threshold the second label (``labels[1]``, e.g. pneumonia);
models with more classes report every label one-vs-rest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the name every torch user knows
from torch import nn

from radpilot.models.manifest import Activation, OperatingPoint, OutputSpec
from radpilot.training.data import Samples
from radpilot.training.networks import build_network, explain_split
from radpilot.training.tasks import Batch, Report, Task, chunks
from radpilot.validation.stats import at_threshold, delong_auc, operating_points, wilson

__all__ = ["ClassificationTask", "FlipAverage"]


class FlipAverage(nn.Module):
    """Log of the mean softmax of an image and its left-right mirror."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``(N, labels)``."""
        p = 0.5 * (self.network(x).softmax(dim=1) + self.network(x.flip(-1)).softmax(dim=1))
        out: torch.Tensor = p.clamp_min(1e-12).log()
        return out


class ClassificationTask(Task):
    """Cross-entropy (optionally class-weighted, label-smoothed), AUC and accuracy."""

    def _criterion(self) -> nn.Module:
        weight = None
        if self.config.training.imbalance == "weighted_loss":
            labels = self.dataset.splits["train"].labels
            assert labels is not None  # classification samples carry labels
            counts = torch.bincount(labels, minlength=len(self.labels)).double().clamp_min(1)
            weight = (len(labels) / (len(self.labels) * counts)).float()
        return nn.CrossEntropyLoss(
            weight=weight, label_smoothing=self.config.training.label_smoothing
        )

    def build(self) -> nn.Module:
        """The configured network with one output per label."""
        self.criterion = self._criterion()
        net = self.config.network
        return build_network(net.name, net.kwargs, self.config.input.channels, len(self.labels))

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Cross-entropy of the batch."""
        assert batch.labels is not None
        out: torch.Tensor = self.criterion(model(batch.images), batch.labels)
        return out

    @torch.no_grad()
    def probabilities(
        self, model: nn.Module, samples: Samples
    ) -> np.ndarray[tuple[int, int], np.dtype[np.float64]]:
        """Softmax scores ``(N, labels)`` (mirror-averaged with ``tta_flip``)."""
        model.eval()
        module = FlipAverage(model) if self.config.evaluation.tta_flip else model
        parts = [module(x).softmax(dim=1).double() for _, x in chunks(samples, self.normalize)]
        return torch.cat(parts).numpy()

    def _reported(self) -> list[int]:
        return [1] if len(self.labels) == 2 else list(range(len(self.labels)))

    def evaluate(self, model: nn.Module, samples: Samples) -> dict[str, float]:
        """Mean one-vs-rest AUC, accuracy, and the plain cross-entropy (``loss``)."""
        assert samples.labels is not None
        probs = self.probabilities(model, samples)
        truth = samples.labels.numpy()
        aucs = [delong_auc(probs[:, k], (truth == k).astype(np.int64)) for k in self._reported()]
        values = [a.value for a in aucs if a is not None]
        nll = F.nll_loss(torch.from_numpy(probs).clamp_min(1e-12).log(), samples.labels)
        return {
            "auc": float(np.mean(values)) if values else float("nan"),
            "accuracy": float(np.mean(probs.argmax(axis=1) == truth)),
            "loss": float(nll),
        }

    def report(self, model: nn.Module, splits: dict[str, Samples]) -> Report:
        """AUC (DeLong CI), accuracy, prevalence, and per reported label the operating
        points chosen on val with sensitivity, specificity, accuracy, PPV and NPV (Wilson
        CIs) on every split."""
        config = self.config.evaluation
        scores: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
        for name, samples in splits.items():
            assert samples.labels is not None
            scores[name] = (self.probabilities(model, samples), samples.labels.numpy())
        metrics: dict[str, dict[str, Any]] = {}
        for split, (probs, truth) in scores.items():
            metrics[split] = {
                "n": len(truth),
                "accuracy": wilson(
                    int(np.sum(probs.argmax(axis=1) == truth)), len(truth)
                ).to_dict(),
                "prevalence": {
                    label: wilson(int(np.sum(truth == k)), len(truth)).to_dict()
                    for k, label in enumerate(self.labels)
                },
                "auc": {},
                "operating_points": [],
            }
        points: list[OperatingPoint] = []
        for k in self._reported():
            label = self.labels[k]
            val_scores, val_truth = scores["val"][0][:, k], (scores["val"][1] == k).astype(np.int64)
            chosen = operating_points(val_scores, val_truth, label, config.sensitivity_target)
            for point in sorted(chosen, key=lambda n: n != config.default_operating_point):
                name = f"{label}/{point}" if len(self.labels) > 2 else point
                on_val = at_threshold(val_scores, val_truth, chosen[point], name, label)
                points.append(
                    OperatingPoint(
                        name=name,
                        label=label,
                        threshold=chosen[point],
                        sensitivity=on_val.sensitivity.value,
                        specificity=on_val.specificity.value,
                    )
                )
                for split, (probs, truth) in scores.items():
                    hit = (truth == k).astype(np.int64)
                    result = at_threshold(probs[:, k], hit, chosen[point], name, label)
                    metrics[split]["operating_points"].append(result.to_dict())
            for split, (probs, truth) in scores.items():
                auc = delong_auc(probs[:, k], (truth == k).astype(np.int64))
                metrics[split]["auc"][label] = auc.to_dict() if auc else None
        return Report(metrics, points, points[0].name if points else None)

    def export_module(self, model: nn.Module) -> nn.Module:
        """The network, mirror-averaged with ``tta_flip``."""
        return FlipAverage(model) if self.config.evaluation.tta_flip else model

    def explain_modules(self, model: nn.Module) -> tuple[str, str] | None:
        """MONAI DenseNet's / SmallCNN's feature and head submodules (not with TTA)."""
        return None if self.config.evaluation.tta_flip else explain_split(model)

    def output_spec(self, report: Report) -> OutputSpec:
        """Labels, softmax, the operating points, critical findings from the card."""
        return OutputSpec(
            labels=self.labels,
            activation=Activation.SOFTMAX,
            operating_points=report.operating_points,
            default_operating_point=report.default_operating_point,
            critical_findings=list(self.config.card.critical_findings),
        )
