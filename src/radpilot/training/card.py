"""The model card: what the model is for, what it learnt from, how well it did, and where
it must not be trusted. Written into the package as ``model-card.json`` (for programs)
and ``model-card.md`` (for people), from the same dictionary.

Everything here is derived from the run except the intended use, the description and
the person-written limitations, which come from the config's ``card`` section. Counts
are of images and of patients; no patient identifier is ever written.
"""

from __future__ import annotations

import platform
from collections import Counter
from typing import Any

import numpy as np
import torch

from radpilot import __version__
from radpilot.training.config import TrainConfig
from radpilot.training.data import Dataset, Samples
from radpilot.training.loop import LoopResult
from radpilot.training.tasks import Normalizer, Report

__all__ = ["build_card", "environment", "inventory", "limitations", "render_markdown"]


def _split_inventory(samples: Samples, labels: list[str], task: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"images": len(samples), "patients": len(set(samples.patients))}
    if samples.labels is not None:
        counts = torch.bincount(samples.labels, minlength=len(labels)).tolist()
        entry["labels"] = dict(zip(labels, counts, strict=True))
    if samples.masks is not None:
        present = [
            (samples.masks == k + 1).flatten(1).any(dim=1).sum().item() for k in range(len(labels))
        ]
        entry["images_with_label"] = dict(zip(labels, present, strict=True))
        pixels = torch.bincount(samples.masks.flatten(), minlength=len(labels) + 1).tolist()
        entry["pixel_fraction"] = {
            label: round(pixels[k + 1] / max(sum(pixels), 1), 6) for k, label in enumerate(labels)
        }
    if samples.boxes is not None:
        boxes = Counter(int(b[4]) for image in samples.boxes for b in image)
        entry["boxes"] = {label: boxes.get(k, 0) for k, label in enumerate(labels)}
        entry["images_without_box"] = sum(1 for image in samples.boxes if len(image) == 0)
    sex = (
        Counter(s or "unknown" for s in samples.sex)
        if samples.sex
        else Counter({"unknown": len(samples)})
    )
    entry["sex"] = dict(sorted(sex.items()))
    ages = np.array([a for a in samples.age if a is not None], dtype=np.float64)
    entry["age_years"] = (
        {
            "known": len(ages),
            "median": round(float(np.median(ages)), 2),
            "q1": round(float(np.quantile(ages, 0.25)), 2),
            "q3": round(float(np.quantile(ages, 0.75)), 2),
            "min": round(float(ages.min()), 2),
            "max": round(float(ages.max()), 2),
        }
        if len(ages)
        else {"known": 0}
    )
    return entry


def inventory(dataset: Dataset) -> dict[str, Any]:
    """Counts per split: images, patients, labels (or masks / boxes), sex, age."""
    return {
        "source": dataset.source,
        "split_method": dataset.split_method,
        "labels": dataset.labels,
        "excluded": dict(sorted(dataset.excluded.items())),
        "splits": {
            name: _split_inventory(s, dataset.labels, dataset.task)
            for name, s in dataset.splits.items()
        },
    }


def limitations(card: dict[str, Any], written: list[str]) -> list[str]:
    """The person-written limitations, then those the run itself shows."""
    out = list(written)
    data, training = card["data"], card["training"]
    val = data["splits"]["val"]
    out.append(
        f"Operating points were chosen on the validation split ({val['images']} images, "
        f"{val['patients']} patients) drawn from the same source as the training data; "
        "this is internal validation, not external validation."
    )
    if "test" not in data["splits"] or card.get("test") is None:
        out.append("No held-out test split was scored; the validation figures are optimistic.")
    if all(s["sex"] == {"unknown": s["images"]} for s in data["splits"].values()):
        out.append(
            "Patient sex and age are unknown for the training data; performance in "
            "subgroups is unknown."
        )
    if data["excluded"]:
        out.append(f"Cases left out of training and validation: {data['excluded']}.")
    if training["stopped"] in ("time budget", "max_steps"):
        out.append(
            f"Training was cut short ({training['stopped']}) after {training['steps']} steps."
        )
    out.append(
        "Sensitivity, specificity and predictive values depend on prevalence; the "
        "validation prevalence is reported with them and may differ from the site's."
    )
    return out


def environment() -> dict[str, str]:
    """Versions that shape the weights (same versions + seed + data: same hash)."""
    import monai

    return {
        "radpilot": __version__,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def build_card(
    config: TrainConfig,
    dataset: Dataset,
    result: LoopResult,
    report: Report,
    normalize: Normalizer,
    model: dict[str, Any],
    training: dict[str, Any],
) -> dict[str, Any]:
    """The card's content: the run's facts, the data inventory, the report, limitations."""
    window = config.input.window
    card: dict[str, Any] = {
        "model": model,
        "intended_use": config.card.intended_use,
        "description": config.card.description,
        "data": inventory(dataset),
        "preprocessing": {
            "intensity": f"window {window.model_dump()}"
            if window
            else "per-image min-max to [0, 1]; MONOCHROME1 inverted",
            "geometry": f"{'letterbox' if config.input.keep_aspect else 'stretch'} to "
            f"{config.input.size} (bilinear, antialiased when shrinking)",
            "channels": config.input.channels,
            "normalize": {
                "mean": normalize.mean,
                "std": normalize.std,
                "from": config.input.normalize,
            },
            "augmentation": config.augment.model_dump(),
            "tta_flip": config.evaluation.tta_flip,
        },
        "training": {
            "network": config.network.name,
            "network_kwargs": config.network.kwargs,
            **training,
            "optimizer": config.optimizer.model_dump(),
            "schedule": config.schedule.model_dump(),
            "loop": config.training.model_dump(),
            "seed": config.seed,
            "deterministic": config.deterministic,
            "threads": torch.get_num_threads(),
            "steps": result.steps,
            "stopped": result.stopped,
            "selected": {
                "metric": config.stop_metric,
                "step": result.best_step,
                "epoch": result.best_epoch,
                "values": result.best,
            },
            "seconds": round(result.seconds, 1),
        },
        "validation": report.metrics["val"],
        "test": report.metrics.get("test"),
        "operating_points": [p.model_dump() for p in report.operating_points],
        "environment": environment(),
    }
    card["limitations"] = limitations(card, list(config.card.limitations))
    return card


def _estimate(value: Any) -> str:
    if not isinstance(value, dict) or "value" not in value:
        return "-"
    if value["n"] == 0 or value["value"] != value["value"]:
        return "n/a"
    interval = f"{value['low']:.3f}-{value['high']:.3f}"
    return f"{value['value']:.3f} ({interval}; n={value['n']}, {value['method']})"


def _metrics_lines(title: str, metrics: dict[str, Any]) -> list[str]:
    lines = [f"## {title}", "", "| metric | value (95% CI) |", "|---|---|"]
    for key, value in metrics.items():
        if key == "operating_points":
            continue
        if isinstance(value, dict) and "value" not in value:
            for sub, inner in value.items():
                lines.append(f"| {key}: {sub} | {_estimate(inner)} |")
        elif isinstance(value, dict):
            lines.append(f"| {key} | {_estimate(value)} |")
        else:
            lines.append(f"| {key} | {value} |")
    points = metrics.get("operating_points", [])
    if points:
        keys = [k for k in points[0] if k not in ("name", "label", "threshold")]
        lines += ["", "| operating point | label | threshold | " + " | ".join(keys) + " |"]
        lines.append("|---" * (3 + len(keys)) + "|")
        for p in points:
            cells = " | ".join(_estimate(p[k]) for k in keys)
            lines.append(f"| {p['name']} | {p['label']} | {p['threshold']:.4f} | {cells} |")
    return [*lines, ""]


def render_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown."""
    model = card["model"]
    lines = [
        f"# Model card: {model['name']} {model['version']}",
        "",
        f"Task: {model['task']}. Weights: `{model['weights']}` "
        f"(SHA-256 `{model['weights_sha256']}`).",
        "",
        "## Intended use",
        "",
        card["intended_use"],
        "",
    ]
    if card.get("description"):
        lines += [card["description"], ""]
    lines += [
        "## Training data",
        "",
        f"Source: {card['data']['source']}. Split: {card['data']['split_method']}.",
        "",
    ]
    lines += [
        "| split | images | patients | labels | sex | age (median, IQR) |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in card["data"]["splits"].items():
        labels = s.get("labels") or s.get("images_with_label") or s.get("boxes") or {}
        age = s["age_years"]
        age_text = f"{age['median']} ({age['q1']}-{age['q3']})" if age["known"] else "unknown"
        lines.append(
            f"| {name} | {s['images']} | {s['patients']} | {labels} | {s['sex']} | {age_text} |"
        )
    lines += ["", "## Preprocessing", ""]
    lines += [f"- {k}: {v}" for k, v in card["preprocessing"].items()]
    lines += ["", "## Training", ""]
    lines += [f"- {k}: {v}" for k, v in card["training"].items() if k != "history"]
    lines.append("")
    lines += _metrics_lines("Validation", card["validation"])
    if card.get("test"):
        lines += _metrics_lines("Test (scored once, after selection)", card["test"])
    lines += ["## Known limitations", ""] + [f"- {item}" for item in card["limitations"]]
    lines += ["", "## Environment", ""] + [f"- {k}: {v}" for k, v in card["environment"].items()]
    return "\n".join(lines) + "\n"
