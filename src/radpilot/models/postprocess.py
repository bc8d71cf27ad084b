"""From a network's raw output to a :class:`Prediction` in source coordinates.

The output conventions per task (``docs/models.md`` has the full table), for N samples:

- classification ``[N, L]`` logits (or probabilities with activation ``none``);
- detection ``[N, K, 6]`` rows ``(x0, y0, x1, y1, score, label_index)`` in network-input
  pixels, score a probability, rows with ``score < 0`` padding;
- segmentation ``[N, C, *spatial]`` logits, C = labels (+1 when ``background_label`` is set
  and channel 0 is background);
- measurement ``[N, M]`` values in the units of ``output.measurements``;
- enhancement ``[N, 1, *spatial]`` in the normalised input range.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from radpilot.core.errors import ManifestError, ModelError
from radpilot.models.geometry import Placement, to_source
from radpilot.models.manifest import Activation, Manifest, OperatingPoint, OutputSpec, Task
from radpilot.models.prediction import (
    Box,
    Finding,
    ImageRef,
    Measurement,
    Prediction,
    headline_key,
)
from radpilot.models.preprocess import Sample

__all__ = [
    "activate",
    "check_output",
    "check_supported",
    "findings",
    "operating_point_for",
    "postprocess",
]

_MASK_THRESHOLD = 0.5


def activate(values: npt.NDArray[np.float32], activation: Activation) -> npt.NDArray[np.float32]:
    """Apply the manifest's activation over axis 1 (labels or channels)."""
    if activation is Activation.NONE:
        return values.astype(np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    out = torch.sigmoid(tensor) if activation is Activation.SIGMOID else tensor.softmax(dim=1)
    return out.numpy()


def operating_point_for(output: OutputSpec, label: str) -> OperatingPoint | None:
    """The operating point that decides ``label``: the default one if it is about this
    label, else the first one listed for it, else none."""
    default = output.operating_point() if output.default_operating_point else None
    if default is not None and default.label == label:
        return default
    return next((p for p in output.operating_points if p.label == label), None)


def findings(output: OutputSpec, scores: dict[str, float]) -> list[Finding]:
    """One finding per label, judged by its operating point; the headline first.

    The headline is the critical finding, else the positive one, else a label the model
    screens for (one with an operating point), highest score first: a negative study's
    headline is then its pneumonia score, not a confident "normal", so that the worklist
    orders negatives by how close they came to the threshold.
    """
    result = []
    for label in output.labels:
        if label not in scores:
            continue
        score = scores[label]
        point = operating_point_for(output, label)
        positive = point is not None and score >= point.threshold
        result.append(
            Finding(
                label=label,
                score=score,
                threshold=point.threshold if point else None,
                operating_point=point.name if point else None,
                positive=positive,
                critical=positive and label in output.critical_findings,
            )
        )
    if result:
        head = max(result, key=headline_key)
        result.remove(head)
        result.insert(0, head)
    return result


def _segmentation_channels(output: OutputSpec) -> list[str | None]:
    """The label of each channel (None: background, no mask)."""
    if output.background_label is not None and output.background_label not in output.labels:
        return [None, *output.labels]
    return [None if label == output.background_label else label for label in output.labels]


def check_supported(manifest: Manifest, source: str = "radpilot-model.yaml") -> None:
    """Refuse a manifest that validates but that radpilot cannot run as written.

    Raises
    ------
    ManifestError
        For a 3D detection model, an activation on a task whose outputs are not scores
        or logits, or a segmentation model with no label besides the background.
    """
    out = manifest.output
    if manifest.task is Task.DETECTION and manifest.input.dimensions != 2:
        raise ManifestError(f"{source}: input.dimensions: detection models are 2D")
    unscored = (Task.DETECTION, Task.MEASUREMENT, Task.ENHANCEMENT)
    if (
        manifest.task in unscored
        and "activation" in out.model_fields_set
        and out.activation is not Activation.NONE
    ):
        raise ManifestError(
            f"{source}: output.activation: a {manifest.task} network's outputs are used as "
            "they are (detection scores are probabilities); write 'none' or leave it out"
        )
    if manifest.task is Task.SEGMENTATION and not any(_segmentation_channels(out)):
        raise ManifestError(f"{source}: output.labels: list at least one label to segment")


def check_output(manifest: Manifest, output: npt.NDArray[np.float32], samples: int) -> None:
    """Refuse an output whose shape does not fit the manifest.

    Raises
    ------
    ModelError
        Naming the expected and the actual shape.
    """
    out = manifest.output
    dims = manifest.input.dimensions
    expected: tuple[int | str, ...]
    if manifest.task is Task.CLASSIFICATION:
        expected = (samples, len(out.labels))
    elif manifest.task is Task.DETECTION:
        expected = (samples, "K", 6)
    elif manifest.task is Task.SEGMENTATION:
        expected = (samples, len(_segmentation_channels(out)), *("S" * dims))
    elif manifest.task is Task.MEASUREMENT:
        expected = (samples, len(out.measurements))
    else:
        expected = (samples, 1, *("S" * dims))
    fits = output.ndim == len(expected) and all(
        isinstance(e, str) or e == a for e, a in zip(expected, output.shape, strict=True)
    )
    if not fits:
        wanted = "(" + ", ".join(str(e) for e in expected) + ")"
        raise ModelError(
            f"the network output has shape {tuple(output.shape)}; a {dims}D {manifest.task} "
            f"model with this manifest must output {wanted} (see docs/models.md); "
            "check output.labels / output.measurements against the network"
        )


def _key_by(
    samples: Sequence[Sample], values: Sequence[float] | npt.NDArray[np.float32]
) -> ImageRef:
    best = int(np.argmax(values)) if len(values) else 0
    images = samples[best].images
    return images[len(images) // 2]


def _stack(frames: list[npt.NDArray[np.generic]], what: str) -> npt.NDArray[np.generic]:
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise ModelError(
            f"the images differ in size ({sorted(shapes)}); a {what} covers images of one "
            "size: route one series per job"
        )
    return np.stack(frames)


def _classification(
    manifest: Manifest, samples: list[Sample], raw: npt.NDArray[np.float32]
) -> Prediction:
    probs = activate(raw, manifest.output.activation)
    scores = {label: float(probs[:, i].max()) for i, label in enumerate(manifest.output.labels)}
    found = findings(manifest.output, scores)
    column = manifest.output.labels.index(found[0].label)
    return Prediction(
        task=manifest.task, findings=found, key_image=_key_by(samples, probs[:, column])
    )


def _box(placement: Placement, row: npt.NDArray[np.float32]) -> tuple[float, float, float, float]:
    rows, cols = placement.source_shape
    x0, y0 = placement.point_to_source(float(row[0]), float(row[1]))
    x1, y1 = placement.point_to_source(float(row[2]), float(row[3]))
    return (
        min(max(x0, 0.0), cols),
        min(max(y0, 0.0), rows),
        min(max(x1, 0.0), cols),
        min(max(y1, 0.0), rows),
    )


def _detection(
    manifest: Manifest, samples: list[Sample], raw: npt.NDArray[np.float32]
) -> Prediction:
    labels = manifest.output.labels
    boxes: list[Box] = []
    for sample, rows in zip(samples, raw, strict=True):
        for row in rows[rows[:, 4] >= 0]:
            index = float(row[5])
            if index != int(index) or not 0 <= index < len(labels):
                raise ModelError(
                    f"the network returned label index {index} in a detection row; "
                    f"it must be 0..{len(labels) - 1} (output.labels)"
                )
            x0, y0, x1, y1 = _box(sample.placement, row)
            if x1 > x0 and y1 > y0:
                label = labels[int(index)]
                boxes.append(Box(label, float(row[4]), sample.images[0], x0, y0, x1, y1))
    boxes.sort(key=lambda b: b.score, reverse=True)
    scores = {
        label: max((b.score for b in boxes if b.label == label), default=0.0) for label in labels
    }
    found = findings(manifest.output, scores)
    top = next((b for b in boxes if b.label == found[0].label), boxes[0] if boxes else None)
    key = top.image if top else samples[0].images[0]
    return Prediction(task=manifest.task, findings=found, boxes=boxes, key_image=key)


def _segmentation(
    manifest: Manifest, samples: list[Sample], raw: npt.NDArray[np.float32]
) -> Prediction:
    channels = _segmentation_channels(manifest.output)
    activation = manifest.output.activation
    probs = activate(raw, activation)
    per_label: dict[str, list[npt.NDArray[np.bool_]]] = {c: [] for c in channels if c is not None}
    scores = dict.fromkeys(per_label, 0.0)
    for sample, prob in zip(samples, probs, strict=True):
        if activation is Activation.SOFTMAX:
            winner = prob.argmax(axis=0)
            chosen = np.stack([winner == i for i in range(len(channels))]).astype(np.float32)
        else:
            chosen = (prob >= _MASK_THRESHOLD).astype(np.float32)
        covered = (slice(None), *sample.placement.covered(prob.shape[1:]))
        peaks = prob[covered].reshape(len(channels), -1).max(axis=1)
        for i, label in enumerate(channels):
            if label is None:
                continue
            mask = to_source(chosen[i : i + 1], sample.placement, mode="nearest")[0] > 0.5
            per_label[label].extend(list(mask if mask.ndim == 3 else mask[None]))
            scores[label] = max(scores[label], float(peaks[i]))
    stacked = {
        label: _stack(list(frames), "mask").astype(bool) for label, frames in per_label.items()
    }
    found = findings(manifest.output, scores)
    images = [image for sample in samples for image in sample.images]
    head = stacked[found[0].label]
    areas = head.reshape(len(images), -1).sum(axis=1)
    key = images[int(np.argmax(areas))] if areas.any() else _key_by(samples, [0.0])
    return Prediction(task=manifest.task, findings=found, masks=stacked, key_image=key)


def _measurement(
    manifest: Manifest, samples: list[Sample], raw: npt.NDArray[np.float32]
) -> Prediction:
    specs = manifest.output.measurements
    measurements = []
    for sample, row in zip(samples, raw, strict=True):
        image = sample.images[0] if len(sample.images) == 1 else None
        for spec, value in zip(specs, row, strict=True):
            measurements.append(Measurement(spec.name, float(value), spec.unit, image))
    return Prediction(task=manifest.task, measurements=measurements, key_image=_key_by(samples, []))


def _enhancement(
    manifest: Manifest, samples: list[Sample], raw: npt.NDArray[np.float32]
) -> Prediction:
    spec = manifest.input
    frames: list[npt.NDArray[np.generic]] = []
    for sample, out in zip(samples, raw, strict=True):
        unit = to_source(out * spec.normalize_std + spec.normalize_mean, sample.placement)[0]
        slices = unit if unit.ndim == 3 else unit[None]
        for intensity, image in zip(sample.intensities, slices, strict=True):
            frames.append(intensity.to_stored(image))
    enhanced = _stack(frames, "enhanced series")
    return Prediction(task=manifest.task, enhanced=enhanced, key_image=_key_by(samples, []))


_BY_TASK = {
    Task.CLASSIFICATION: _classification,
    Task.DETECTION: _detection,
    Task.SEGMENTATION: _segmentation,
    Task.MEASUREMENT: _measurement,
    Task.ENHANCEMENT: _enhancement,
}


def postprocess(
    manifest: Manifest, samples: list[Sample], raw: npt.NDArray[np.float32]
) -> Prediction:
    """Turn one study's network output into a :class:`Prediction`.

    Raises
    ------
    ModelError
        If the output's shape does not fit the manifest, or its values cannot be mapped
        (a label index out of range, images of different sizes for a mask stack).
    """
    check_output(manifest, raw, len(samples))
    prediction = _BY_TASK[manifest.task](manifest, samples, raw)
    prediction.images = [image for sample in samples for image in sample.images]
    return prediction
