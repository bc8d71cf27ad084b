"""The training loop: batches, optimiser and schedule, EMA, evaluation, early stopping,
checkpoints, a time budget, and a progress bar with the running metrics.

Batches are slices of the split's tensor (no DataLoader, no worker processes: the whole
split is in memory and augmentation works on the batch), drawn in an order the run's
seeded generator decides. The model is evaluated on validation once per epoch (or every
``val_every_steps``); the best evaluation by the stop metric is kept (weights in memory,
``checkpoints/best.pt`` on disk) and is what gets exported. ``last.pt`` holds the latest
evaluated weights and the optimiser state.
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from radpilot.training.augment import BatchAugment
from radpilot.training.config import TrainConfig
from radpilot.training.data import Samples
from radpilot.training.tasks import Batch, Task

__all__ = ["LoopResult", "train_loop"]


@dataclass
class LoopResult:
    """What the loop did and the model it selected (best weights loaded)."""

    model: nn.Module
    best: dict[str, float]
    best_step: int
    best_epoch: float
    steps: int
    stopped: str
    seconds: float
    losses: list[float] = field(default_factory=list)  # per optimiser step
    evaluations: list[dict[str, float]] = field(default_factory=list)


def _optimizer(config: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    o = config.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(
            params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
        )
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


def _scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, total: int
) -> torch.optim.lr_scheduler.LRScheduler:
    s = config.schedule
    if s.name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=config.optimizer.lr,
            total_steps=max(total, 2),
            pct_start=s.warmup_fraction or 0.3,
        )
    warm = round(total * s.warmup_fraction)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if s.name == "constant":
            return 1.0
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return s.min_lr_fraction + (1 - s.min_lr_fraction) * 0.5 * (
            1 + math.cos(math.pi * progress)
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _order(train: Samples, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    if config.training.imbalance == "weighted_sampling":
        strata = train.strata()
        counts = torch.bincount(strata).double()
        weights = (1.0 / counts)[strata]
        return torch.multinomial(weights, len(train), replacement=True, generator=generator)
    return torch.randperm(len(train), generator=generator)


def _batches(order: torch.Tensor, size: int) -> list[torch.Tensor]:
    parts = list(torch.split(order, size))
    if len(parts) > 1 and len(parts[-1]) < 2:  # batch norm cannot train on one sample
        parts.pop()
    return parts


class _Selector:
    """Keeps the best evaluation and counts evaluations without improvement."""

    def __init__(self, metric: str, lower: bool, min_delta: float) -> None:
        self.metric, self.lower, self.min_delta = metric, lower, min_delta
        self.best: dict[str, float] | None = None
        self.state: dict[str, Any] | None = None
        self.step, self.epoch, self.stale = 0, 0.0, 0

    def offer(self, metrics: dict[str, float], module: nn.Module, step: int, epoch: float) -> bool:
        value = metrics[self.metric]
        if self.best is not None:
            best = self.best[self.metric]
            better = value < best - self.min_delta if self.lower else value > best + self.min_delta
            if not (math.isfinite(value) and (better or not math.isfinite(best))):
                self.stale += 1
                return False
        self.best, self.step, self.epoch, self.stale = dict(metrics), step, epoch, 0
        self.state = copy.deepcopy(module.state_dict())
        return True


def _status(
    epoch: int,
    epochs: int,
    losses: deque[float],
    selector: _Selector,
    last: dict[str, float] | None,
) -> str:
    text = f"epoch {epoch}/{epochs}"
    if losses:
        text += f"  loss {sum(losses) / len(losses):.4f}"
    if last is not None:
        text += f"  val {selector.metric} {last[selector.metric]:.4f}"
    if selector.best is not None:
        text += f"  best {selector.best[selector.metric]:.4f} @ {selector.epoch:g}"
    return text


def train_loop(
    task: Task,
    model: nn.Module,
    splits: dict[str, Samples],
    config: TrainConfig,
    generator: torch.Generator,
    *,
    checkpoints: Path | None = None,
    progress: bool = False,
) -> LoopResult:
    """Train ``model`` on ``splits['train']``, select on ``splits['val']``.

    Stops after ``training.epochs``, ``max_steps``, ``time_budget_minutes`` (checked
    before every step) or ``early_stopping.patience`` evaluations without improvement,
    whichever comes first, and returns the best evaluated weights.
    """
    t = config.training
    train, val = splits["train"], splits["val"]
    started = time.monotonic()
    deadline = started + t.time_budget_minutes * 60 if t.time_budget_minutes else math.inf
    per_epoch = len(_batches(torch.arange(len(train)), t.batch_size))
    total = min(per_epoch * t.epochs, t.max_steps or per_epoch * t.epochs)
    memory = torch.channels_last if t.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory)  # type: ignore[call-overload]
    optimizer = _optimizer(config, task.trainable(model))
    scheduler = _scheduler(config, optimizer, total)
    ema = None
    if t.ema_decay:
        average = get_ema_multi_avg_fn(t.ema_decay)  # type: ignore[no-untyped-call]
        ema = AveragedModel(model, multi_avg_fn=average, use_buffers=True)
    scored: nn.Module = ema.module if ema is not None else model
    augment = BatchAugment(config.augment, generator)
    selector = _Selector(
        config.stop_metric, config.stop_metric in task.lower_is_better, t.early_stopping.min_delta
    )
    result = LoopResult(model, {}, 0, 0.0, 0, "epochs", 0.0)
    recent: deque[float] = deque(maxlen=20)
    last: dict[str, float] | None = None
    if checkpoints is not None:
        checkpoints.mkdir(parents=True, exist_ok=True)

    def evaluate(epoch: float) -> None:
        nonlocal last
        last = task.evaluate(scored, val)
        last = {**last, "step": float(result.steps), "epoch": epoch}
        result.evaluations.append(last)
        if selector.offer(last, scored, result.steps, epoch) and checkpoints is not None:
            torch.save({"model": selector.state, "metrics": last}, checkpoints / "best.pt")
        if checkpoints is not None:
            state = {
                "model": scored.state_dict(),
                "optimizer": optimizer.state_dict(),
                "metrics": last,
            }
            torch.save(state, checkpoints / "last.pt")

    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=console, disable=not progress) as bar:
        handle = bar.add_task("training", total=total, status="")
        evaluated_at = 0
        for epoch in range(1, t.epochs + 1):
            for index in _batches(_order(train, config, generator), t.batch_size):
                if result.steps >= total or time.monotonic() > deadline:
                    result.stopped = (
                        "max_steps" if result.steps >= total and t.max_steps else "time budget"
                    )
                    break
                model.train()
                images, masks, boxes = augment(
                    train.images[index],
                    None if train.masks is None else train.masks[index],
                    None if train.boxes is None else [train.boxes[i] for i in index.tolist()],
                )
                batch = Batch(
                    task.normalize(images).contiguous(memory_format=memory),
                    None if train.labels is None else train.labels[index],
                    masks,
                    boxes,
                )
                loss = task.loss(model, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                if t.grad_clip:
                    nn.utils.clip_grad_norm_(task.trainable(model), t.grad_clip)
                optimizer.step()
                scheduler.step()
                if ema is not None:
                    ema.update_parameters(model)
                result.steps += 1
                value = float(loss.detach())
                result.losses.append(value)
                recent.append(value)
                if t.val_every_steps and result.steps % t.val_every_steps == 0:
                    evaluate(result.steps / max(per_epoch, 1))
                    evaluated_at = result.steps
                bar.update(
                    handle, advance=1, status=_status(epoch, t.epochs, recent, selector, last)
                )
            else:
                if evaluated_at != result.steps:
                    evaluate(float(epoch))
                    evaluated_at = result.steps
                bar.update(handle, status=_status(epoch, t.epochs, recent, selector, last))
                patience = t.early_stopping.patience
                if patience is not None and selector.stale >= patience:
                    result.stopped = "early stopping"
                    break
                continue
            break
        if evaluated_at != result.steps or selector.best is None:
            evaluate(result.steps / max(per_epoch, 1))
    assert selector.state is not None and selector.best is not None  # evaluated at least once
    scored.load_state_dict(selector.state)
    scored.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    result.model, result.best = scored, selector.best
    result.best_step, result.best_epoch = selector.step, selector.epoch
    result.seconds = time.monotonic() - started
    return result
