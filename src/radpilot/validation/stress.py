"""Stress tests: the model on controlled perturbations of the validation images, at
increasing strength, and where its performance leaves the unperturbed result's CI.

Each DICOM image (2D grey-scale, one frame) is perturbed with the same functions as
``radpilot synth --perturb`` (noise, blur, low dose, contrast, window shift, rotation,
crop, MONOCHROME1 inversion, burned-in text, metal streaks), written back as a valid data
set (Explicit VR Little Endian, the stored bit depth kept) and given to the model through
its own preprocessing, as a study from a scanner would be. Per strength: ROC AUC (DeLong)
and sensitivity and specificity at the threshold (Wilson). A metric **breaks** at the
first strength whose estimate falls outside the unperturbed 95% CI.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from radpilot.data.synth_common import random_stream
from radpilot.data.synth_image import ImageState, Photometric
from radpilot.data.synth_perturb import PerturbationName, PerturbationSpec, apply_perturbations
from radpilot.models.inference import LoadedModel
from radpilot.validation.stats import delong_auc, wilson

__all__ = ["DEFAULT_LADDERS", "perturb_dataset", "stress_curve"]

#: Strengths tried by default, weakest first ("" = the perturbation's own default).
DEFAULT_LADDERS: dict[PerturbationName, tuple[str, ...]] = {
    PerturbationName.NOISE: ("50", "100", "200", "400", "800"),
    PerturbationName.BLUR: ("0.5", "1", "2", "4", "8"),
    PerturbationName.LOW_DOSE: ("0.5", "0.25", "0.1", "0.05"),
    PerturbationName.CONTRAST: ("0.8", "0.6", "0.4", "0.2"),
    PerturbationName.WINDOW_SHIFT: ("0.1", "0.2", "0.4", "0.8"),
    PerturbationName.ROTATION: ("2", "5", "10", "20", "30"),
    PerturbationName.CROP: ("0.9", "0.8", "0.7", "0.6", "0.5"),
    PerturbationName.RESOLUTION: ("0.75", "0.5", "0.25", "0.125"),
    PerturbationName.MONOCHROME1: ("",),
    PerturbationName.BURNED_IN_TEXT: ("",),
    PerturbationName.METAL_STREAKS: ("2", "6", "12"),
}


def _number(ds: Dataset, keyword: str, default: float) -> float:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    return float(value[0] if isinstance(value, Sequence) and not isinstance(value, str) else value)


def perturb_dataset(ds: Dataset, spec: PerturbationSpec, seed: str) -> Dataset:
    """A copy of ``ds`` with ``spec`` applied to its pixels; the same seed, the same copy.

    Raises
    ------
    ValueError
        If the image is not a single-frame unsigned grey-scale image, or the strength is
        out of range.
    """
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or int(ds.get("NumberOfFrames", 1)) > 1:
        raise ValueError("stress tests take single-frame MONOCHROME1/2 images")
    if int(ds.get("PixelRepresentation", 0)) != 0:
        raise ValueError("stress tests take unsigned pixel data")
    bits = int(ds.BitsStored)
    max_value = (1 << bits) - 1
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing") or [1.0]
    state = ImageState(
        np.asarray(ds.pixel_array, dtype=np.float64),
        spacing_mm=float(spacing[0]),
        window_center=_number(ds, "WindowCenter", max_value / 2),
        window_width=_number(ds, "WindowWidth", max_value + 1),
        max_value=max_value,
        intercept=_number(ds, "RescaleIntercept", 0.0),
        photometric=Photometric(photometric),
        fill=0.0 if photometric == "MONOCHROME2" else float(max_value),
        burned_in=str(ds.get("BurnedInAnnotation", "NO")).upper() == "YES",
    )
    rng = random_stream(seed, str(ds.SOPInstanceUID), spec.name.value, spec.value or "")
    state, _ = apply_perturbations(state, [spec], rng)
    out = copy.deepcopy(ds)
    pixels = np.clip(np.rint(state.pixels), 0, max_value).astype(np.uint16)
    out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out.Rows, out.Columns = pixels.shape
    out.BitsAllocated, out.BitsStored, out.HighBit = 16, bits, bits - 1
    out.SamplesPerPixel = 1
    out.PhotometricInterpretation = state.photometric.value
    out.PixelData = pixels.tobytes()
    out["PixelData"].VR = "OW"
    out.WindowCenter, out.WindowWidth = state.window_center, state.window_width
    out.BurnedInAnnotation = "YES" if state.burned_in else "NO"
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword in out:
            setattr(out, keyword, [state.spacing_mm, state.spacing_mm])
    return out


def _scores(model: LoadedModel, studies: list[list[Dataset]], finding: str) -> np.ndarray:
    scores = []
    for start in range(0, len(studies), 32):
        for prediction in model.predict_batch(studies[start : start + 32], explain=False):
            scores.append(max(f.score for f in prediction.findings if f.label == finding))
    return np.asarray(scores, dtype=np.float64)


def _metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    called, truth = scores >= threshold, labels == 1
    auc = delong_auc(scores, labels)
    return {
        "auc": None if auc is None else auc.to_dict(),
        "sensitivity": wilson(int(np.sum(called & truth)), int(truth.sum())).to_dict(),
        "specificity": wilson(int(np.sum(~called & ~truth)), int((~truth).sum())).to_dict(),
    }


def stress_curve(
    model: LoadedModel,
    studies: list[list[Dataset]],
    labels: np.ndarray,
    finding: str,
    threshold: float,
    perturbation: PerturbationName,
    strengths: Sequence[str] | None = None,
    seed: str = "radpilot-stress",
) -> dict[str, Any]:
    """Metrics of ``model`` on ``studies`` unperturbed and at each strength, and where
    each metric breaks (``None``: it held at every strength tried)."""
    ladder = list(strengths if strengths is not None else DEFAULT_LADDERS[perturbation])
    baseline = _metrics(_scores(model, studies, finding), labels, threshold)
    points = []
    for strength in ladder:
        spec = PerturbationSpec(perturbation, strength or None)
        perturbed = [[perturb_dataset(ds, spec, seed) for ds in study] for study in studies]
        metrics = _metrics(_scores(model, perturbed, finding), labels, threshold)
        points.append({"strength": strength, **metrics})
    breaks: dict[str, str | None] = {}
    for metric in ("auc", "sensitivity", "specificity"):
        base = baseline[metric]
        breaks[metric] = None
        if base is None:
            continue
        for point in points:
            value = point[metric]["value"] if point[metric] else None
            if value is not None and not base["low"] <= value <= base["high"]:
                breaks[metric] = point["strength"] or "on"
                break
    return {"perturbation": perturbation.value, "baseline": baseline, "points": points,
            "breaks_at": breaks}  # fmt: skip
