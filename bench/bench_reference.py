"""The reference model: training time and peak memory, and inference throughput, each
against its bare peer in the same run.

Training (``--training``): ``radpilot train models/reference/train.yaml`` (what ``make
reference-model`` runs) against ``bench.reference_recipe`` with the same recipe: the same
MONAI DenseNet, data, augmentation, optimiser, schedule, EMA and 20 epochs in a plain
PyTorch loop without radpilot's config checks, splits, card, checkpoints and
deterministic export. Each runs in its own child process; wall time, CPU time and peak
RSS of that child.

Inference: the committed package through radpilot's runtime against the bare TorchScript
module (``torch.jit.load`` of the same ``model.pt``) on the same images, 2 threads:

- *study → finding*: ``LoadedModel.predict_batch`` on DICOM datasets (1024 x 1024 DX
  radiographs of the official test split), preprocessing included, in batches of 32 and
  one study at a time, and one at a time with the Grad-CAM heatmap;
- *network only*: radpilot's runtime wrapper (``network.forward`` on NumPy arrays, NaN
  check and all) against the bare module's forward on the same preprocessed tensors.

Run from the repository root: ``.venv/bin/python -m bench.bench_reference [--training]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import cpuwatch
from radpilot.data.synth import pneumoniamnist_cases, radiograph
from radpilot.models.inference import load_model
from radpilot.models.package import ModelPackage
from radpilot.models.preprocess import prepare

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "models" / "reference" / "package"
CONFIG = REPO / "models" / "reference" / "train.yaml"
NPZ = REPO.parent / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist.npz"
OUT = REPO / "bench" / "out" / "reference"
# models/reference/train.yaml, spelled as bench.reference_recipe's options
RECIPE = [
    *("--size", "64", "--net", "densenet", "--layers", "4,8,6", "--widths", "32"),
    *("--growth", "16", "--epochs", "20", "--batch-size", "128", "--lr", "0.003"),
    *("--warmup", "0.2", "--weight-decay", "0.0005", "--ema", "0.99"),
    *("--rotate", "10", "--scale", "0.1", "--translate", "0.05", "--threads", "2"),
]
# Runs argv as a grandchild and prints its peak RSS (KiB) and CPU seconds as JSON.
_MEASURE = (
    "import json, resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps({'rc': rc, 'maxrss_kib': u.ru_maxrss, 'cpu_s': u.ru_utime + u.ru_stime}))\n"
)


def measure_child(argv: list[str]) -> dict[str, Any]:
    """Wall, CPU and peak RSS of ``argv`` in a fresh process, and the machine's quiet."""
    cpuwatch.wait_until_quiet({os.getpgrp()})
    before, started = cpuwatch.snapshot(), time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *argv], capture_output=True, text=True, check=True
    )
    wall = time.monotonic() - started
    usage = json.loads(done.stdout.strip().splitlines()[-1])
    if usage["rc"] != 0:
        raise RuntimeError(f"{argv[:3]} exited {usage['rc']}: {done.stderr[-2000:]}")
    foreign = cpuwatch.foreign_cpu_seconds(before, cpuwatch.snapshot(), {os.getpgrp()})
    return {
        "wall_s": wall,
        "cpu_s": usage["cpu_s"],
        "peak_rss_mib": usage["maxrss_kib"] / 1024,
        "foreign_cpu_s": foreign,
    }


def training(work: Path) -> dict[str, Any]:
    """Both trainings once, radpilot first; their test AUC as each reports it."""
    run, recipe_json = work / "run", work / "recipe.json"
    radpilot = [str(REPO / ".venv" / "bin" / "radpilot"), "--data-dir", str(work / "rp")]
    ours = measure_child(
        [*radpilot, "train", str(CONFIG), "--output", str(run), "--no-progress", "--format", "json"]
    )
    card = json.loads((run / "package" / "model-card.json").read_text())
    ours["test_auc"] = card["test"]["auc"]["pneumonia"]["value"]
    ours["weights_sha256"] = card["model"]["weights_sha256"]
    peer = measure_child(
        [sys.executable, "-m", "bench.reference_recipe", *RECIPE, "--out", str(recipe_json)]
    )
    peer["test_auc"] = json.loads(recipe_json.read_text())["test"]["auc"][0]
    return {"radpilot": ours, "bare_loop": peer, "ratio_wall": ours["wall_s"] / peer["wall_s"]}


def best_rate(images: int, call: Callable[[], object], repeats: int) -> float:
    """Images per second, best of ``repeats`` after one warm-up call."""
    call()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return images / best


def inference(count: int, size: int, repeats: int) -> dict[str, Any]:
    """Images per second of every path on the same ``count`` radiographs."""
    torch.set_num_threads(2)
    cases = list(pneumoniamnist_cases(NPZ, "test", count=count))
    studies = [[radiograph(c, size=size)] for c in cases]
    package = ModelPackage.open(PACKAGE)
    ours, plain = load_model(package, threads=2), load_model(package, explain=False, threads=2)
    bare = torch.jit.load(str(PACKAGE / "model.pt")).eval()
    arrays = np.stack([prepare(s, package.manifest.input)[0].array for s in studies])
    tensors = torch.from_numpy(arrays)

    def bare_forward(batch: int) -> None:
        with torch.inference_mode():
            for start in range(0, count, batch):
                bare(tensors[start : start + batch]).softmax(dim=1)

    def runtime_forward(batch: int) -> None:
        for start in range(0, count, batch):
            plain.network.forward(arrays[start : start + batch])

    def predict(batch: int, explain: bool = False) -> None:
        model = ours if explain else plain
        for start in range(0, count, batch):
            model.predict_batch(studies[start : start + batch], explain=explain)

    before = cpuwatch.snapshot()
    rates = {
        "bare, batch 32": best_rate(count, lambda: bare_forward(32), repeats),
        "bare, batch 1": best_rate(count, lambda: bare_forward(1), repeats),
        "runtime network, batch 32": best_rate(count, lambda: runtime_forward(32), repeats),
        "runtime network, batch 1": best_rate(count, lambda: runtime_forward(1), repeats),
        "predict from DICOM, batch 32": best_rate(count, lambda: predict(32), repeats),
        "predict from DICOM, batch 1": best_rate(count, lambda: predict(1), repeats),
        "predict + heatmap, batch 1": best_rate(count, lambda: predict(1, True), repeats),
    }
    foreign = cpuwatch.foreign_cpu_seconds(before, cpuwatch.snapshot(), {os.getpgrp()})
    return {"images": count, "size": size, "images_per_s": rates, "foreign_cpu_s": foreign}


def summarise(record: dict[str, Any]) -> str:
    """The Markdown tables for BENCHMARKS.md."""
    lines = []
    train = record.get("training")
    if train:
        lines += [
            "| training | wall | CPU | peak RSS | test AUC |",
            "|---|---|---|---|---|",
        ]
        for name in ("radpilot", "bare_loop"):
            t = train[name]
            lines.append(
                f"| {name} | {t['wall_s']:.0f} s | {t['cpu_s']:.0f} s | "
                f"{t['peak_rss_mib']:.0f} MiB | {t['test_auc']:.4f} |"
            )
        lines += ["", f"radpilot ÷ bare loop, wall time: {train['ratio_wall']:.2f}", ""]
    rates = record["inference"]["images_per_s"]
    lines += ["| inference path | images/s | ÷ bare, same batch |", "|---|---|---|"]
    for name, rate in rates.items():
        batch = name.rsplit(" ", 1)[-1]
        lines.append(f"| {name} | {rate:.0f} | {rate / rates[f'bare, batch {batch}']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_reference", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--training", action="store_true", help="also time both trainings")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=1024, help="radiograph matrix, pixels")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out-dir", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not NPZ.is_file():
        raise SystemExit(f"no PneumoniaMNIST archive at {NPZ}")
    record: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "torch": torch.__version__,
    }
    if args.training:
        with tempfile.TemporaryDirectory() as work:
            record["training"] = training(Path(work))
    record["inference"] = inference(args.images, args.size, args.repeats)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = record["when"].replace(":", "")
    (args.out_dir / f"reference-{stamp}.json").write_text(json.dumps(record, indent=2))
    text = summarise(record)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
