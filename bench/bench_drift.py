"""Drift detection: false alarms on unchanged traffic and delay after a change, over runs.

Each run replays a stream through the real DICOM path (as ``tests/test_monitoring_drift``
does, with its own seed): ``--baseline`` varied PneumoniaMNIST studies (30 % pneumonia)
drawn at random from the test split, then ``--changed`` studies of a ``--scenario``,
sent by C-STORE into radpilot with the reference model active:

``scanner``
    a scanner never seen appears, the contrast halves and 80 % are pneumonia;
``collimation``
    other patients (drawn from the validation split) imaged with collimation tightened
    to 80 % of each side, at the same 30 % — nothing in the headers but the matrix size.

Then the rolling windows (reference = the first ``--reference``, windows of ``--window``
every ``--step``) are judged by two detectors on the same features:

``radpilot``
    :func:`radpilot.monitoring.drift.compare`: Bonferroni across fields, effect-size
    floors (PSI 0.2, 0.5 SD, rate change 0.1), new categories from 3 studies.
``plain``
    the peer: the same SciPy tests at p < ``--alpha`` per field, no correction, no
    effect-size floor, a new category from 1 study — what a straightforward use of the
    tests gives.

A false alarm is a run with any window over unchanged studies that fired; the delay is
the number of changed studies seen when the first window after the change fired. The
radpilot detector is also reported per family of fields (headers, image statistics,
embedding, positive rate), each judged as it is inside the full comparison.

Run from the repository root::

    .venv/bin/python -m bench.bench_drift --runs 8
"""

from __future__ import annotations

import argparse
import logging
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from radpilot.data.synth_common import Variation
from radpilot.data.synth_perturb import PerturbationSpec
from radpilot.data.synth_tables import Drift
from radpilot.monitoring.drift import DriftThresholds
from radpilot.monitoring.features import StudyFeatures, study_features
from radpilot.monitoring.stream import Window, scan

REPO = Path(__file__).resolve().parents[1]
NPZ = REPO.parent / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist.npz"


FAMILIES = {
    "headers": lambda name: not name.startswith("input_") and name not in (
        "embedding", "positive_rate", "score"),
    "image statistics": lambda name: name.startswith("input_"),
    "embedding": lambda name: name == "embedding",
    "positive rate": lambda name: name == "positive_rate",
}  # fmt: skip


def changed_part(scenario: str, seed: int, count: int, folder: Path) -> list[tuple[Path, str]]:
    """The studies after the change."""
    from radpilot.pipeline import demo as loop

    if scenario == "scanner":
        return loop.make_studies(
            NPZ, folder / "drift", count, 0.8, seed=f"bench-drift-{seed}", size=256,
            draw=f"bench-drift-{seed}",
            variation=Variation(True, Drift.NEW_SCANNER, (PerturbationSpec.parse("contrast=0.5"),)),
        )  # fmt: skip
    return loop.make_studies(
        NPZ, folder / "crop", count, 0.3, seed=f"bench-crop-{seed}", size=256, split="val",
        draw=f"bench-crop-{seed}",
        variation=Variation(True, None, (PerturbationSpec.parse("crop=0.8"),)),
    )  # fmt: skip


def stream(
    seed: int, baseline: int, changed: int, folder: Path, scenario: str = "scanner"
) -> list[StudyFeatures]:
    """One replayed stream's feature rows, in arrival order."""
    from radpilot.pipeline import demo as loop

    parts = [
        loop.make_studies(NPZ, folder / "base", baseline, 0.3, seed=f"bench-{seed}", size=256,
                          draw=f"bench-{seed}"),
        changed_part(scenario, seed, changed, folder),
    ]  # fmt: skip
    for part in parts:
        random.Random(seed).shuffle(part)
    run = loop.replay(folder, parts, REPO / "models/reference/package", timeout=600)
    with run.db.session() as session:
        return study_features(session, run.version.name)


def judged(
    windows: list[Window], baseline: int, family: str | None = None
) -> tuple[list[str], int | None]:
    """(what fired over unchanged studies, changed studies seen at the first alarm), for
    all fields or one family of them."""

    def fired(w: Window) -> list[str]:
        return [f for f in w.drifted if family is None or FAMILIES[family](f)]

    false_alarms = sorted({f for w in windows if w.end <= baseline for f in fired(w)})
    after = next((w for w in windows if w.end > baseline and fired(w)), None)
    return false_alarms, None if after is None else after.end - baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--baseline", type=int, default=100)
    parser.add_argument("--changed", type=int, default=40)
    parser.add_argument("--reference", type=int, default=60)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--step", type=int, default=2)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--scenario", choices=["scanner", "collimation"], default="scanner")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    ours = DriftThresholds(alpha=args.alpha)
    # The peer: every field at alpha, no effect-size floors, a new category from one study.
    plain = replace(ours, bonferroni=False, min_psi=0.0, min_shift_sd=0.0, min_new=1,
                    min_rate_change=0.0, min_mmd=-1.0)  # fmt: skip
    names = ["radpilot", "plain", *(f"radpilot: {family}" for family in FAMILIES)]
    outcomes: dict[str, list[tuple[list[str], int | None]]] = {name: [] for name in names}
    started = time.monotonic()
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="radpilot-drift-") as tmp:
            rows = stream(run, args.baseline, args.changed, Path(tmp), args.scenario)
        for name, limits in (("radpilot", ours), ("plain", plain)):
            windows = scan(rows, args.reference, args.window, args.step, limits)
            outcomes[name].append(judged(windows, args.baseline))
            if name == "radpilot":
                for family in FAMILIES:
                    outcomes[f"radpilot: {family}"].append(judged(windows, args.baseline, family))
        print(f"run {run}: {outcomes['radpilot'][-1]} / plain {outcomes['plain'][-1]}",
              file=sys.stderr)  # fmt: skip
    elapsed = time.monotonic() - started
    print(f"\n{args.scenario}: {args.runs} runs, {args.baseline} unchanged + {args.changed} "
          "changed studies each; "
          f"reference {args.reference}, windows of {args.window} every {args.step}; "
          f"{platform.processor() or platform.machine()}, {elapsed:.0f} s\n")  # fmt: skip
    header = ["detector", "runs with a false alarm", "what fired falsely", "detected",
              "delay, median [range]"]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|---|---|---|---|---|")
    for name, found in outcomes.items():
        alarms = sum(1 for fa, _ in found if fa)
        fired = ", ".join(sorted({f for fa, _ in found for f in fa})) or "-"
        delays = [d for _, d in found if d is not None]
        span = f"{statistics.median(delays):.0f} [{min(delays)}-{max(delays)}]" if delays else "-"
        print(f"| {name} | {alarms}/{len(found)} | {fired} | {len(delays)}/{len(found)} | {span} |")


if __name__ == "__main__":
    main()
