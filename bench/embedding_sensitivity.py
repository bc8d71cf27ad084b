"""Which image changes move the reference model's embedding: MMD per perturbation.

The reference window is 60 studies drawn from PneumoniaMNIST's test split (30 %
pneumonia); each live window is 40 other patients, drawn from the validation split at
the same rate, with one perturbation of ``radpilot synth`` applied (or none: the
control). Each window is run through the reference model directly (no network path:
the embedding is what is measured), and the embeddings are compared with
:func:`radpilot.monitoring.drift.mmd_test` at the Bonferroni level a full comparison
uses. The stream tests and ``bench_drift`` check the same detector through DICOM.

Run from the repository root::

    .venv/bin/python -m bench.embedding_sensitivity
"""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

from radpilot.data.synth_common import Variation
from radpilot.data.synth_perturb import PerturbationSpec
from radpilot.models.inference import load_model
from radpilot.models.package import ModelPackage
from radpilot.monitoring.drift import DriftThresholds, mmd_test

REPO = Path(__file__).resolve().parents[1]
NPZ = REPO.parent / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist.npz"
PERTURBATIONS = (
    None, "noise", "low-dose", "blur=3", "rotation=10", "metal-streaks",
    "burned-in-text=PORTABLE", "window-shift=0.2", "contrast=0.5", "resolution=0.5",
    "crop=0.8",
)  # fmt: skip
ALPHA = 0.01 / 25  # the corrected level of a comparison of about 25 fields


def main() -> None:
    from radpilot.pipeline import demo as loop

    model = load_model(ModelPackage.open(REPO / "models/reference/package"), explain=False)

    def embeddings(files: list[tuple[Path, str]]) -> np.ndarray:
        found = []
        for path, _ in files:
            prediction = model.predict([pydicom.dcmread(path)], explain=False)
            assert prediction.embedding is not None
            found.append(prediction.embedding)
        return np.stack(found)

    started = time.monotonic()
    limits = DriftThresholds()
    with tempfile.TemporaryDirectory(prefix="radpilot-embedding-") as tmp:
        folder = Path(tmp)
        reference = embeddings(
            loop.make_studies(NPZ, folder / "ref", 60, 0.3, seed="ref", size=256, draw="ref")
        )
        rows = []
        for name in PERTURBATIONS:
            specs = (PerturbationSpec.parse(name),) if name else ()
            files = loop.make_studies(
                NPZ, folder / f"live-{len(rows)}", 40, 0.3, seed="live", size=256,
                split="val", draw="live", variation=Variation(True, None, specs),
            )  # fmt: skip
            live = embeddings(files)
            value, p_value = mmd_test(reference, live, ALPHA)
            drifted = p_value < ALPHA and value >= limits.min_mmd
            rows.append((name or "(none)", value, p_value, drifted))
    machine = platform.processor() or platform.machine()
    print(f"\n{machine}, {time.monotonic() - started:.0f} s; reference 60 (test split), "
          f"live 40 (validation split), alpha {ALPHA:.1e}\n")  # fmt: skip
    print("| change | MMD² | p | drifts |")
    print("|---|---|---|---|")
    for name, value, p_value, drifted in rows:
        print(f"| {name} | {value:.3f} | {p_value:.1e} | {'yes' if drifted else 'no'} |")


if __name__ == "__main__":
    main()
