"""Which image changes move the reference model's embedding: MMD per perturbation.

The reference window is 60 studies drawn from PneumoniaMNIST's test split (30 %
pneumonia); each live window is 40 other patients, drawn from the validation split at
the same rate, with one perturbation of ``radpilot synth`` applied (or none: the
control). ``--draws`` repeats this with other random draws of both windows; the table
gives, per change, the median MMD² and in how many draws the embedding drifted. Each
window is run through the reference model directly (no network path: the embedding is
what is measured), and the embeddings are compared with
:func:`radpilot.monitoring.drift.mmd_test` at the Bonferroni level a full comparison
uses. The stream tests and ``bench_drift`` check the same detector through DICOM.

Run from the repository root::

    .venv/bin/python -m bench.embedding_sensitivity --draws 8
"""

from __future__ import annotations

import argparse
import platform
import statistics
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

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=8)
    args = parser.parse_args()
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
    found: dict[str, list[tuple[float, bool]]] = {name or "(none)": [] for name in PERTURBATIONS}
    for draw in range(args.draws):
        with tempfile.TemporaryDirectory(prefix="radpilot-embedding-") as tmp:
            folder = Path(tmp)
            reference_files = loop.make_studies(
                NPZ, folder / "ref", 60, 0.3, seed=f"ref-{draw}", size=256, draw=f"ref-{draw}"
            )
            reference = embeddings(reference_files)
            for number, name in enumerate(PERTURBATIONS):
                specs = (PerturbationSpec.parse(name),) if name else ()
                files = loop.make_studies(
                    NPZ, folder / f"live-{number}", 40, 0.3, seed=f"live-{draw}", size=256,
                    split="val", draw=f"live-{draw}", variation=Variation(True, None, specs),
                )  # fmt: skip
                value, p_value = mmd_test(reference, embeddings(files), ALPHA)
                drifted = p_value < ALPHA and value >= limits.min_mmd
                found[name or "(none)"].append((value, drifted))
    machine = platform.processor() or platform.machine()
    print(f"\n{machine}, {time.monotonic() - started:.0f} s; {args.draws} draws; reference 60 "
          f"(test split), live 40 (validation split), alpha {ALPHA:.1e}\n")  # fmt: skip
    print("| change | MMD², median [range] | drifted in |")
    print("|---|---|---|")
    for name, results in found.items():
        values = [v for v, _ in results]
        fired = sum(d for _, d in results)
        print(f"| {name} | {statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}] "
              f"| {fired}/{len(results)} |")  # fmt: skip


if __name__ == "__main__":
    main()
