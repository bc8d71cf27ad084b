"""Scores of the committed reference model on PneumoniaMNIST, through radpilot's runtime."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from radpilot.data.synth import pneumoniamnist_cases, radiograph
from radpilot.models.inference import LoadedModel, load_model
from radpilot.models.package import ModelPackage

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "models" / "reference" / "package"
NPZ = ROOT.parent / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist.npz"


def pneumonia_scores(model: LoadedModel, studies: list[Dataset]) -> tuple[np.ndarray, np.ndarray]:
    """Pneumonia score and the positive call at the default operating point, per study."""
    scores, calls = [], []
    for start in range(0, len(studies), 64):
        for prediction in model.predict_batch(
            [[ds] for ds in studies[start : start + 64]], explain=False
        ):
            (finding,) = [f for f in prediction.findings if f.label == "pneumonia"]
            scores.append(finding.score)
            calls.append(finding.positive)
    return np.asarray(scores), np.asarray(calls)


def reference_test_scores(size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels) of the official test split as ``size`` px DX radiographs."""
    return reference_scores("test", size)


@cache
def reference_scores(split: str, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels) of an official split as ``size`` px DX radiographs."""
    model = load_model(ModelPackage.open(PACKAGE), explain=False, threads=2)
    cases = list(pneumoniamnist_cases(NPZ, split))
    scores, _ = pneumonia_scores(model, [radiograph(c, size=size) for c in cases])
    return scores, np.asarray([c.label for c in cases], dtype=np.int64)
