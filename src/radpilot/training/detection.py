"""Detection: MONAI's RetinaNet (:mod:`radpilot.training.detection_net`), trained with
its focal-free BCE + smooth-L1 losses, ATSS matching and hard-negative sampling.

Model selection uses box recall at ``evaluation.score_threshold`` (a ground-truth box is
found when a box of its label overlaps it by ``iou_threshold`` or more). The report gives
box recall and precision at each operating point (Wilson CIs), and, per label, the image
level AUC of the best box's score (DeLong CI): that score is what the runtime reports as
the finding's score, so the operating points are thresholds on it, chosen on val.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from radpilot.models.manifest import Activation, OperatingPoint, OutputSpec
from radpilot.training.data import Samples
from radpilot.training.detection_net import DetectionExport, RadpilotDetector, build_detector
from radpilot.training.tasks import Batch, Report, Task, chunks
from radpilot.validation.stats import delong_auc, operating_points, wilson

__all__ = ["DetectionTask", "match_boxes"]


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lower = torch.maximum(a[:, None, :2], b[None, :, :2])
    upper = torch.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = (upper - lower).clamp(min=0).prod(-1)
    area_a = (a[:, 2:4] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:4] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None] - inter).clamp(min=1e-9)


def match_boxes(predicted: torch.Tensor, truth: torch.Tensor, iou: float) -> tuple[int, int]:
    """``(found truth boxes, true predicted boxes)``: greedy by score, one match each,
    same label, overlap at least ``iou``. ``predicted`` rows are ``x0 y0 x1 y1 score label``
    (already thresholded), ``truth`` rows ``x0 y0 x1 y1 label``."""
    if len(predicted) == 0 or len(truth) == 0:
        return 0, 0
    overlaps = _iou(predicted, truth)
    overlaps[predicted[:, 5][:, None] != truth[:, 4][None]] = 0.0
    used: set[int] = set()
    hits = 0
    for row in torch.argsort(predicted[:, 4], descending=True).tolist():
        candidates = [(float(overlaps[row, j]), j) for j in range(len(truth)) if j not in used]
        best = max(candidates, default=(0.0, -1))
        if best[0] >= iou:
            used.add(best[1])
            hits += 1
    return len(used), hits


class DetectionTask(Task):
    """RetinaNet boxes; recall for selection; image-level AUC and box recall/precision."""

    def build(self) -> nn.Module:
        """A :class:`RadpilotDetector` (its ``network`` holds the weights)."""
        return build_detector(
            dict(self.config.network.kwargs),
            self.config.input.channels,
            len(self.labels),
            self.config.input.size,
            self.config.seed,
        )

    @staticmethod
    def _targets(boxes: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        # MONAI's boxes are in the image array's axis order: (row, col) corners
        return [{"boxes": b[:, [1, 0, 3, 2]], "labels": b[:, 4].long()} for b in boxes]

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Classification + box regression loss of the batch."""
        assert batch.boxes is not None
        losses = model(batch.images, self._targets(batch.boxes))
        total: torch.Tensor = losses["classification"] + losses["box_regression"]
        return total

    def _exporter(self, model: nn.Module) -> DetectionExport:
        assert isinstance(model, RadpilotDetector)
        e = self.config.evaluation
        return DetectionExport(
            model,
            self.config.input.size,
            self.config.input.channels,
            max_detections=e.max_detections,
            score_threshold=e.score_threshold,
            nms_threshold=e.nms_threshold,
        )

    @torch.no_grad()
    def predict(self, model: nn.Module, samples: Samples) -> list[torch.Tensor]:
        """Kept boxes per image, rows ``x0 y0 x1 y1 score label`` (input pixels)."""
        exporter = self._exporter(model).eval()
        out = []
        for _, x in chunks(samples, self.normalize):
            for rows in exporter(x):
                out.append(rows[rows[:, 4] >= 0])
        return out

    @torch.no_grad()
    def _loss(self, model: nn.Module, samples: Samples) -> float:
        assert samples.boxes is not None
        assert isinstance(model, RadpilotDetector)
        model.train()
        network: nn.Module = model.network
        network.eval()  # the detector computes losses in train mode; BN stays frozen
        total = 0.0
        for start, x in chunks(samples, self.normalize):
            total += float(
                self.loss(model, Batch(x, boxes=samples.boxes[start : start + len(x)]))
            ) * len(x)
        model.eval()
        return total / max(len(samples), 1)

    def evaluate(self, model: nn.Module, samples: Samples) -> dict[str, float]:
        """Box recall at the score threshold, and the loss."""
        assert samples.boxes is not None
        found = sum(
            match_boxes(p, t, self.config.evaluation.iou_threshold)[0]
            for p, t in zip(self.predict(model, samples), samples.boxes, strict=True)
        )
        total = sum(len(t) for t in samples.boxes)
        return {"recall": found / total if total else 0.0, "loss": self._loss(model, samples)}

    def _best_scores(self, predicted: list[torch.Tensor], k: int) -> np.ndarray[Any, Any]:
        return np.array(
            [
                float(p[p[:, 5] == k, 4].max()) if bool((p[:, 5] == k).any()) else 0.0
                for p in predicted
            ]
        )

    def _box_counts(
        self, predicted: list[torch.Tensor], truth: list[torch.Tensor], k: int, threshold: float
    ) -> dict[str, Any]:
        """Box recall and precision (Wilson CIs) of label ``k`` at ``threshold``."""
        kept = [p[(p[:, 4] >= threshold) & (p[:, 5] == k)] for p in predicted]
        wanted = [t[t[:, 4] == k] for t in truth]
        iou = self.config.evaluation.iou_threshold
        counts = [match_boxes(p, t, iou) for p, t in zip(kept, wanted, strict=True)]
        return {
            "box_recall": wilson(sum(c[0] for c in counts), sum(len(t) for t in wanted)).to_dict(),
            "box_precision": wilson(sum(c[1] for c in counts), sum(len(p) for p in kept)).to_dict(),
        }

    def _f1_threshold(
        self, predicted: list[torch.Tensor], truth: list[torch.Tensor], k: int
    ) -> float:
        """The score threshold with the best box F1 on these images (50 candidates)."""
        scores = torch.cat([p[p[:, 5] == k, 4] for p in predicted] + [torch.zeros(0)])
        if len(scores) == 0:
            return self.config.evaluation.score_threshold
        candidates = torch.unique(
            torch.quantile(scores.double(), torch.linspace(0, 1, 50, dtype=torch.float64))
        )
        best, chosen = -1.0, float(candidates[0])
        for threshold in candidates.tolist():
            c = self._box_counts(predicted, truth, k, threshold)
            r, p = c["box_recall"]["value"], c["box_precision"]["value"]
            f1 = 2 * r * p / (r + p) if r + p > 0 else 0.0
            if f1 > best:
                best, chosen = f1, threshold
        return chosen

    def report(self, model: nn.Module, splits: dict[str, Samples]) -> Report:
        """Per label: the box-F1 threshold and, where val has images with and without the
        label, the image-level AUC of the best box score and Youden / high-sensitivity
        thresholds on it; at each, box recall and precision (Wilson CIs). All thresholds
        are chosen on val."""
        e = self.config.evaluation
        predicted = {name: self.predict(model, s) for name, s in splits.items()}
        truth = {name: s.boxes or [] for name, s in splits.items()}
        metrics: dict[str, Any] = {
            name: {"n": len(s), "boxes": sum(len(b) for b in truth[name])}
            for name, s in splits.items()
        }
        points: list[OperatingPoint] = []
        for k, label in enumerate(self.labels):
            chosen = {"box_f1": self._f1_threshold(predicted["val"], truth["val"], k)}
            present = {
                n: np.array([int(bool((b[:, 4] == k).any())) for b in truth[n]]) for n in splits
            }
            best = {n: self._best_scores(predicted[n], k) for n in splits}
            if len(set(present["val"].tolist())) == 2:
                chosen |= operating_points(best["val"], present["val"], label, e.sensitivity_target)
                for split in splits:
                    auc = delong_auc(best[split], present[split])
                    metrics[split].setdefault("image_auc", {})[label] = (
                        auc.to_dict() if auc else None
                    )
            order = sorted(chosen, key=lambda n: n != e.default_operating_point)
            for point in order:
                name = f"{label}/{point}" if len(self.labels) > 1 else point
                points.append(OperatingPoint(name=name, label=label, threshold=chosen[point]))
                for split in splits:
                    counts = self._box_counts(predicted[split], truth[split], k, chosen[point])
                    entry = {"name": name, "label": label, "threshold": chosen[point], **counts}
                    metrics[split].setdefault("operating_points", []).append(entry)
        return Report(metrics, points, points[0].name if points else None)

    def export_module(self, model: nn.Module) -> nn.Module:
        """The network with anchors, decoding and Fast NMS (:class:`DetectionExport`)."""
        return self._exporter(model)

    def output_spec(self, report: Report) -> OutputSpec:
        """Labels and operating points; activation none (detectors output probabilities)."""
        return OutputSpec(
            labels=self.labels,
            activation=Activation.NONE,
            operating_points=report.operating_points,
            default_operating_point=report.default_operating_point,
            critical_findings=list(self.config.card.critical_findings),
        )
