"""A plain PyTorch training loop for radpilot's reference model (pneumonia on chest
radiographs): the recipe-screening tool, and the bare peer that ``bench.bench_reference``
times ``radpilot train`` against (with options spelling ``models/reference/train.yaml``).

Trains a small MONAI ResNet or DenseNet from scratch on PneumoniaMNIST (MedMNIST v2) on the CPU,
selects the checkpoint on the official validation split's ROC AUC, chooses the operating
threshold on the validation split (Youden's J), and only then scores the official test
split once: ROC AUC with its DeLong 95% CI and accuracy at that threshold with its Wilson
95% CI. It also records wall time, CPU time, peak RSS and how busy the machine was.

Preprocessing is radpilot's own for a manifest without a window (see
``radpilot.models.preprocess``): each image scaled by its own minimum and maximum to
[0, 1], bilinear resize (``align_corners=False``) to ``--size``, then
``(x - mean) / std`` with the training set's mean and standard deviation, rounded so
that they can be written into the model's manifest.

The whole dataset is kept as one tensor and augmented per batch on the fly; MONAI's
``RandAffine`` draws one transform per image in Python (about 10 s per epoch on 2 cores
at 64 px, a third of the training step), so the random matrices are drawn for the whole
batch at once and applied with MONAI's batched ``AffineTransform`` layer.

Run from the repository root (``docs/reference-model.md`` records the chosen recipe; its
defaults here are an earlier ResNet screening recipe)::

    .venv/bin/python -m bench.reference_recipe --out bench/out/reference_recipe.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_roc_auc
from monai.networks.layers import AffineTransform
from monai.networks.nets import DenseNet, ResNet
from monai.transforms import NormalizeIntensity, Resize, ScaleIntensity
from monai.utils import set_determinism
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

if __package__ in (None, ""):
    # Run as ``python bench/reference_recipe.py``: make the ``bench`` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import cpuwatch
from radpilot.validation.stats import Estimate, delong_auc, wilson

DATA = Path("../shared/data/pneumoniamnist/pneumoniamnist.npz")


def load_split(npz: Any, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as ``(N, 1, size, size)`` float32 in [0, 1] and ``(N,)`` int64 labels.

    Raises
    ------
    KeyError
        If the archive lacks ``{split}_images`` or ``{split}_labels``.
    """
    images = np.asarray(npz[f"{split}_images"], dtype=np.float32)  # (N, 28, 28)
    # The images stand in the channel axis, so that "channel-wise" means "per image".
    unit = ScaleIntensity(minv=0.0, maxv=1.0, channel_wise=True)(images)
    resized = Resize(spatial_size=(size, size), mode="bilinear", align_corners=False)(unit)
    x = torch.as_tensor(resized).as_subclass(torch.Tensor).unsqueeze(1).contiguous()
    y = torch.as_tensor(np.asarray(npz[f"{split}_labels"]).reshape(-1), dtype=torch.int64)
    return x, y


def build_net(args: argparse.Namespace) -> nn.Module:
    """The network named by ``--net``, two logits out (normal, pneumonia)."""
    if args.net == "densenet":
        return DenseNet(
            spatial_dims=2,
            in_channels=1,
            out_channels=2,
            init_features=args.widths[0],
            growth_rate=args.growth,
            block_config=tuple(args.layers),
        )
    return ResNet(
        block="basic",
        layers=args.layers,
        block_inplanes=args.widths,
        spatial_dims=2,
        n_input_channels=1,
        conv1_t_size=args.stem_kernel,
        conv1_t_stride=args.stem_stride,
        no_max_pool=not args.max_pool,
        num_classes=2,
    )


class BatchAugment:
    """Random rotation, scale, translation and left-right flip, one draw per image."""

    def __init__(self, args: argparse.Namespace, generator: torch.Generator) -> None:
        self.rotate = math.radians(args.rotate)
        self.scale, self.translate, self.hflip = args.scale, args.translate, args.hflip
        self.gen = generator
        self.warp = AffineTransform(normalized=True, padding_mode="border", align_corners=False)

    def _uniform(self, n: int, half_width: float) -> torch.Tensor:
        return (torch.rand(n, generator=self.gen) * 2.0 - 1.0) * half_width

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Augment a batch ``(B, 1, H, W)``."""
        n = x.shape[0]
        angle = self._uniform(n, self.rotate)
        zoom = 1.0 + self._uniform(n, self.scale)
        flip = torch.where(torch.rand(n, generator=self.gen) < self.hflip, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3)
        # theta maps output to input coordinates, normalised to [-1, 1], in (row, column)
        # order: MONAI's ``reverse_indexing`` default. Flipping the column axis mirrors L/R.
        theta[:, 0, 0] = torch.cos(angle) * zoom
        theta[:, 0, 1] = -torch.sin(angle) * zoom * flip
        theta[:, 1, 0] = torch.sin(angle) * zoom
        theta[:, 1, 1] = torch.cos(angle) * zoom * flip
        theta[:, :, 2] = self._uniform(2 * n, 2.0 * self.translate).view(n, 2)
        return torch.as_tensor(self.warp(x, theta.to(x.device)))


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, tta: bool, batch: int = 512) -> np.ndarray:
    """Pneumonia probabilities; with ``tta`` averaged with the left-right mirror image."""
    model.eval()
    out = []
    for chunk in x.split(batch):
        prob = model(chunk).softmax(dim=1)[:, 1]
        if tta:
            prob = 0.5 * (prob + model(chunk.flip(-1)).softmax(dim=1)[:, 1])
        out.append(prob)
    return torch.cat(out).cpu().numpy().astype(np.float64)


def auc(prob: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC (MONAI's implementation)."""
    return float(compute_roc_auc(torch.as_tensor(prob), torch.as_tensor(y)))


def youden_threshold(prob: np.ndarray, y: np.ndarray) -> float:
    """Threshold maximising sensitivity + specificity - 1 (positive when ``p >= t``).

    Returned half-way between the best score and the next lower one, not on a sample.
    """
    cuts = np.unique(prob)[::-1]  # descending
    sens = np.array([(prob[y == 1] >= c).mean() for c in cuts])
    spec = np.array([(prob[y == 0] < c).mean() for c in cuts])
    best = int(np.argmax(sens + spec))
    below = cuts[best + 1] if best + 1 < len(cuts) else 0.0
    return float(0.5 * (cuts[best] + below))


def operating_point(prob: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, Any]:
    """AUC (DeLong) and accuracy, sensitivity, specificity at ``threshold`` (Wilson CIs),
    each ``[value, low, high]``; computed with radpilot's metrics, which are not timed."""
    pred = prob >= threshold
    tp, tn = int((pred & (y == 1)).sum()), int((~pred & (y == 0)).sum())
    area = delong_auc(prob, y.astype(np.int64))
    assert area is not None  # both classes are present in every split

    def triple(e: Estimate) -> list[float]:
        return [e.value, e.low, e.high]

    return {
        "n": len(y),
        "auc": triple(area),
        "accuracy": triple(wilson(tp + tn, len(y))),
        "sensitivity": triple(wilson(tp, int((y == 1).sum()))),
        "specificity": triple(wilson(tn, int((y == 0).sum()))),
    }


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train, select, threshold and test; the report as a JSON-ready dict."""
    started, cpu0, load0 = time.monotonic(), time.process_time(), os.getloadavg()
    before = cpuwatch.snapshot()
    torch.set_num_threads(args.threads)
    set_determinism(seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    dev = torch.device(args.device)

    with np.load(args.data) as npz:
        (xtr, ytr), (xva, yva), (xte, yte) = (
            load_split(npz, s, args.size) for s in ("train", "val", "test")
        )
    mean, std = round(float(xtr.mean()), 4), round(float(xtr.std()), 4)
    norm = NormalizeIntensity(subtrahend=mean, divisor=std)
    xtr, xva, xte = (
        torch.as_tensor(norm(x)).as_subclass(torch.Tensor).to(dev) for x in (xtr, xva, xte)
    )
    ytr = ytr.to(dev)

    model = build_net(args).to(dev)
    counts = torch.bincount(ytr, minlength=2).double()
    weight = (len(ytr) / (2 * counts)).float() if args.class_weight else None
    loss_fn = nn.CrossEntropyLoss(
        weight=None if weight is None else weight.to(dev), label_smoothing=args.label_smoothing
    )
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = math.ceil(len(ytr) / args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps, pct_start=args.warmup
    )
    ema = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(args.ema), use_buffers=True)
        if args.ema > 0
        else None
    )
    augment = BatchAugment(args, gen)
    scored: nn.Module = ema if ema is not None else model

    history, best_auc, best_state, best_epoch = [], -1.0, None, -1
    for epoch in range(1, args.epochs + 1):
        t0, total = time.monotonic(), 0.0
        model.train()
        for idx in torch.randperm(len(ytr), generator=gen).to(dev).split(args.batch_size):
            loss = loss_fn(model(augment(xtr[idx])), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            total += float(loss.detach()) * len(idx)
        val_auc = auc(predict(scored, xva, args.tta), yva.numpy())
        if val_auc > best_auc:
            best_auc, best_epoch = val_auc, epoch
            best_state = copy.deepcopy(scored.state_dict())
        history.append(
            {"epoch": epoch, "loss": total / len(ytr), "val_auc": val_auc,
             "seconds": time.monotonic() - t0}
        )  # fmt: skip
        print(json.dumps(history[-1]), flush=True)
    train_seconds = time.monotonic() - started

    assert best_state is not None  # at least one epoch ran
    scored.load_state_dict(best_state)
    pva, pte = predict(scored, xva, args.tta), predict(scored, xte, args.tta)
    threshold = youden_threshold(pva, yva.numpy())
    if args.save:
        net = scored.module if isinstance(scored, AveragedModel) else scored
        torch.save(net.state_dict(), args.save)
    after = cpuwatch.snapshot()
    return {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "normalize": {"mean": mean, "std": std},
        "params": sum(p.numel() for p in model.parameters()),
        "selected_epoch": best_epoch,
        "threshold": threshold,
        "val": operating_point(pva, yva.numpy(), threshold),
        "test": operating_point(pte, yte.numpy(), threshold),
        "train_wall_s": train_seconds,
        "total_wall_s": time.monotonic() - started,
        "cpu_s": time.process_time() - cpu0,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "foreign_cpu_s": cpuwatch.foreign_cpu_seconds(before, after, {os.getpgrp()}),
        "loadavg_start_end": [load0, os.getloadavg()],
        "history": history,
    }


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the chosen recipe."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA, help="PneumoniaMNIST .npz")
    p.add_argument("--out", type=Path, help="write the JSON report here too")
    p.add_argument("--save", type=Path, help="write the selected weights (state dict) here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu (the recipe) or cuda (screening)")
    p.add_argument("--size", type=int, default=28, help="network input, pixels per side")
    p.add_argument("--net", choices=["resnet", "densenet"], default="resnet")
    p.add_argument("--layers", type=_ints, default=[1, 1, 1, 1], help="blocks per stage")
    p.add_argument("--widths", type=_ints, default=[16, 32, 64, 128], help="stage widths")
    p.add_argument("--growth", type=int, default=16, help="DenseNet growth rate")
    p.add_argument("--stem-kernel", type=int, default=3)
    p.add_argument("--stem-stride", type=int, default=1)
    p.add_argument("--max-pool", action="store_true", help="max-pool after the stem")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3, help="OneCycle peak learning rate")
    p.add_argument("--warmup", type=float, default=0.2, help="OneCycle warm-up fraction")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--no-class-weight", dest="class_weight", action="store_false")
    p.add_argument("--ema", type=float, default=0.99, help="EMA decay per step; 0: off")
    p.add_argument("--rotate", type=float, default=15.0, help="max rotation, degrees")
    p.add_argument("--scale", type=float, default=0.15, help="max zoom change, fraction")
    p.add_argument("--translate", type=float, default=0.1, help="max shift, image fraction")
    p.add_argument("--hflip", type=float, default=0.0, help="left-right flip probability")
    p.add_argument("--tta", action="store_true", help="average with the mirror image")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the recipe and print its report."""
    args = parse_args(argv)
    if not args.data.is_file():
        raise SystemExit(
            f"no PneumoniaMNIST archive at {args.data}: run from the repository root with "
            "../shared/data beside it, or pass --data PATH/pneumoniamnist.npz"
        )
    report = train(args)
    summary = {k: v for k, v in report.items() if k != "history"}
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
