"""``radpilot train``: config in, model package out.

::

    OUTPUT/
      package/                 the model package (``radpilot models add OUTPUT/package``)
        radpilot-model.yaml    manifest: input = the training preprocessing, operating points
        model.pt               TorchScript, written deterministically
        model-card.md          the model card, for people
        model-card.json        the same, for programs
      checkpoints/best.pt      the selected weights (state dict) and their metrics
      checkpoints/last.pt      the latest evaluated weights and the optimiser state
      history.json             every evaluation and the loss of every step

Everything that can be checked is checked before the first step: the config (on load),
the data (classes, splits, leaks), the network's construction and the transfer-learning
checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from radpilot.core.errors import ConfigurationError
from radpilot.core.settings import Settings
from radpilot.models.manifest import MANIFEST_NAME, ExplainSpec, InputSpec, Manifest, Runtime, Task
from radpilot.models.package import ModelPackage, sha256_of
from radpilot.training import card as cards
from radpilot.training.classification import ClassificationTask
from radpilot.training.config import TrainConfig
from radpilot.training.data import Dataset, check_dataset, input_spec
from radpilot.training.detection import DetectionTask
from radpilot.training.detection_net import RadpilotDetector
from radpilot.training.export import export_torchscript
from radpilot.training.loop import LoopResult, train_loop
from radpilot.training.networks import CheckpointReport, embedding_spec, freeze, load_checkpoint
from radpilot.training.segmentation import SegmentationTask
from radpilot.training.tasks import Normalizer, Report
from radpilot.training.tasks import Task as TrainTask

__all__ = ["TrainResult", "load_dataset", "run_training"]

TASKS: dict[str, type[TrainTask]] = {
    "classification": ClassificationTask,
    "segmentation": SegmentationTask,
    "detection": DetectionTask,
}
WEIGHTS = "model.pt"


@dataclass
class TrainResult:
    """Where the package is and what the run produced."""

    package: Path
    weights_sha256: str
    card: dict[str, Any]
    loop: LoopResult


@contextlib.contextmanager
def seeded(seed: int, threads: int | None, deterministic: bool) -> Iterator[None]:
    """Seed torch, numpy and random, set threads and deterministic algorithms; restore
    the process's settings afterwards."""
    saved = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.get_rng_state(),
    )
    saved_np, saved_py = np.random.get_state(), random.getstate()
    try:
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)  # MONAI draws from numpy's global state
        random.seed(seed)
        if threads:
            torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])
        torch.set_rng_state(saved[2])
        np.random.set_state(saved_np)
        random.setstate(saved_py)


def load_dataset(config: TrainConfig, settings: Settings | None = None) -> Dataset:
    """The configured source's splits, limited and checked.

    Raises
    ------
    TrainingDataError
        If the data cannot train the model (see :func:`check_dataset`).
    """
    kind = config.data.kind
    if kind == "npz":
        from radpilot.training.data_npz import load_npz

        dataset = load_npz(config)
    elif kind == "dicom":
        from radpilot.training.data_dicom import load_dicom_folder

        dataset = load_dicom_folder(config)
    else:
        from radpilot.training.data_cohort import load_cohort

        dataset = load_cohort(config, settings or Settings())
    dataset = dataset.limited(config.data.limit, config.seed)
    check_dataset(dataset)
    return dataset


def _normalizer(config: TrainConfig, dataset: Dataset) -> Normalizer:
    if config.input.normalize == "none":
        return Normalizer(0.0, 1.0)
    if config.input.normalize == "fixed":
        assert config.input.mean is not None and config.input.std is not None  # validated
        return Normalizer(config.input.mean, config.input.std)
    images = dataset.splits["train"].images
    return Normalizer(round(float(images.mean()), 4), max(round(float(images.std()), 4), 1e-4))


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise ConfigurationError(
            f"{output} exists and is not empty; choose another --output or pass --overwrite"
        )


def _package_folder(output: Path) -> Path:
    package = output / "package"
    if package.exists():
        shutil.rmtree(package)
    package.mkdir(parents=True)
    return package


def _manifest(
    config: TrainConfig,
    task: TrainTask,
    report: Report,
    normalize: Normalizer,
    model: torch.nn.Module,
    limitations: list[str],
) -> Manifest:
    base = input_spec(config)
    split = task.explain_modules(model)
    explain = ExplainSpec(feature_module=split[0], head_module=split[1]) if split else ExplainSpec()
    embedding = embedding_spec(model, *split) if split else None
    return Manifest(
        name=config.name,
        version=config.version,
        task=Task(config.task),
        runtime=Runtime.TORCHSCRIPT,
        weights=WEIGHTS,
        use_case=config.card.use_case,
        description=config.card.description,
        applies_to=config.card.applies_to,
        input=InputSpec(
            **{
                **base.model_dump(),
                "normalize_mean": normalize.mean,
                "normalize_std": normalize.std,
            }
        ),
        output=task.output_spec(report),
        intended_use=config.card.intended_use,
        limitations=limitations,
        explain=explain,
        embedding=embedding,
    )


def run_training(
    config: TrainConfig,
    output: Path,
    *,
    settings: Settings | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Train as configured and write the package under ``output/package``.

    Raises
    ------
    ConfigurationError
        If the output folder is not empty, or the network or checkpoint is refused.
    TrainingDataError
        If the data cannot train the model (single class, empty split, patient leak).
    ModelError
        If the exported module does not reproduce the network.
    """
    _check_output(output, overwrite)
    with seeded(config.seed, config.threads, config.deterministic):
        dataset = load_dataset(config, settings)
        normalize = _normalizer(config, dataset)
        task = TASKS[config.task](config, dataset, normalize)
        model = task.build()
        report_ckpt: CheckpointReport | None = None
        net = config.network
        target = model.network if isinstance(model, RadpilotDetector) else model
        if net.checkpoint is not None:
            report_ckpt = load_checkpoint(target, net.checkpoint, strict=net.checkpoint_strict)
        freeze(target, list(net.freeze))
        package = _package_folder(output)  # everything checked: now write
        generator = torch.Generator().manual_seed(config.seed)
        result = train_loop(
            task,
            model,
            dataset.splits,
            config,
            generator,
            checkpoints=output / "checkpoints",
            progress=progress,
        )
        wanted = ("val", "test") if config.evaluation.test else ("val",)
        scored = {n: s for n, s in dataset.splits.items() if n in wanted}
        report = task.report(result.model, scored)
        example = normalize(dataset.splits["val"].images[:2])
        export_torchscript(task.export_module(result.model), example, package / WEIGHTS)
        sha = sha256_of(package / WEIGHTS)
        model_entry = {
            "name": config.name,
            "version": config.version,
            "task": config.task,
            "runtime": "torchscript",
            "weights": WEIGHTS,
            "weights_sha256": sha,
        }
        training = {
            "parameters": sum(p.numel() for p in target.parameters()),
            "transfer_learning": None if report_ckpt is None else report_ckpt.__dict__,
        }
        card = cards.build_card(config, dataset, result, report, normalize, model_entry, training)
        manifest = _manifest(config, task, report, normalize, result.model, card["limitations"])
    text = yaml.safe_dump(
        manifest.model_dump(mode="json", by_alias=True, exclude_none=True),
        sort_keys=False,
        allow_unicode=True,
    )
    (package / MANIFEST_NAME).write_text(text, encoding="utf-8")
    (package / "model-card.json").write_text(
        json.dumps(card, indent=1, default=str) + "\n", encoding="utf-8"
    )
    (package / "model-card.md").write_text(cards.render_markdown(card), encoding="utf-8")
    ModelPackage.open(package)  # the package radpilot will load, checked as it will be
    history = {"losses": result.losses, "evaluations": result.evaluations}
    (output / "history.json").write_text(json.dumps(history) + "\n", encoding="utf-8")
    return TrainResult(package, sha, card, result)
