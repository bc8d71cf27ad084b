"""Validation at scale: 100,000 cases, 10 subgroups, 2,000 patient-bootstrap resamples,
against a plain scikit-learn loop computing the same numbers, in one run.

The cases (seeded): 50,000 patients with 1-3 studies each (100,000 studies in all), a
binormal score whose separation varies by patient, 30 % prevalence, one attribute with 10
sites. radpilot: :func:`radpilot.validation.binary.evaluate_binary` on all cases and on
each site's cases (ROC AUC, and at 6 operating points sensitivity, specificity, PPV,
NPV, accuracy and F1, plus the Brier score, each with a 2,000-replicate percentile
bootstrap resampling patients; calibration and net benefit). The peer: for each of the
11 case sets, a loop over replicates that draws patients with NumPy, gathers their
studies and calls scikit-learn's ``roc_auc_score``, ``confusion_matrix``,
``f1_score`` and ``brier_score_loss`` at the same thresholds. The peer is timed on
``--peer-reps`` replicates and scaled linearly to 2,000 (it would take many minutes);
its intervals are compared with radpilot's on those replicates' count.

Run: ``.venv/bin/python -m bench.bench_validation``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import brier_score_loss, confusion_matrix, f1_score, roc_auc_score

from bench import cpuwatch
from radpilot.validation.binary import Options, choose_thresholds, evaluate_binary
from radpilot.validation.cases import CaseTable

OUT = Path(__file__).resolve().parent / "out" / "validation"


def make_cases(patients: int, seed: int) -> CaseTable:
    """Seeded clustered cases with a ``site`` attribute of 10 values."""
    rng = np.random.default_rng(seed)
    studies = rng.integers(1, 4, size=patients)
    index = np.repeat(np.arange(patients), studies)
    sick = rng.random(patients) < 0.3
    shift = rng.normal(1.6, 0.6, size=patients)
    labels = sick[index].astype(np.int64)
    logits = rng.normal(0, 1, size=len(index)) + labels * shift[index] - 0.8
    scores = 1 / (1 + np.exp(-logits))
    sites = (index % 10).astype(str)
    ids = [str(i) for i in range(len(index))]
    return CaseTable(ids, [str(p) for p in index], scores, labels,
                     {"site": [f"site {s}" for s in sites]})  # fmt: skip


def radpilot_run(cases: CaseTable, reps: int) -> dict[str, Any]:
    options = Options(bootstrap=reps, seed=0)
    sites = np.asarray(cases.attributes["site"])
    reports = {"all": evaluate_binary(cases, {"default": 0.5}, options)}
    for site in sorted(set(sites.tolist())):
        reports[site] = evaluate_binary(cases.subset(sites == site), {"default": 0.5}, options)
    return reports


def sklearn_run(cases: CaseTable, reps: int) -> dict[str, Any]:
    """The same statistics per replicate with scikit-learn, for every case set."""
    sites = np.asarray(cases.attributes["site"])
    sets = {"all": cases, **{s: cases.subset(sites == s) for s in sorted(set(sites.tolist()))}}
    out: dict[str, Any] = {}
    for name, table in sets.items():
        thresholds = [0.5, *choose_thresholds(table, Options()).values()]
        index = table.patient_index
        members = np.argsort(index, kind="stable")
        starts = np.searchsorted(index[members], np.arange(index.max() + 2))
        rng = np.random.default_rng(0)
        aucs, sens, kept = [], [], []
        for _ in range(reps):
            drawn = rng.integers(0, index.max() + 1, size=index.max() + 1)
            rows = np.concatenate([members[starts[p] : starts[p + 1]] for p in drawn])
            y, s = table.labels[rows], table.scores[rows]
            aucs.append(roc_auc_score(y, s))
            kept.append(brier_score_loss(y, s))
            for t in thresholds:
                called = s >= t
                tn, fp, fn, tp = confusion_matrix(y, called, labels=[0, 1]).ravel()
                # sensitivity, specificity, PPV, NPV, accuracy, F1
                ppv, npv = tp / max(tp + fp, 1), tn / max(tn + fn, 1)
                kept.append((tp / (tp + fn), tn / (tn + fp), ppv, npv, (tp + tn) / len(y)))
                kept.append(f1_score(y, called))
                if t == 0.5:
                    sens.append(tp / (tp + fn))
        out[name] = {"auc": np.quantile(aucs, [0.025, 0.975]).tolist(),
                     "sensitivity": np.quantile(sens, [0.025, 0.975]).tolist()}  # fmt: skip
    return out


def timed(fn: Any, *args: Any) -> tuple[Any, float, float]:
    before = cpuwatch.snapshot()
    started = time.perf_counter()
    result = fn(*args)
    wall = time.perf_counter() - started
    foreign = cpuwatch.foreign_cpu_seconds(before, cpuwatch.snapshot(), {os.getpgrp()})
    return result, wall, foreign


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_validation")
    parser.add_argument("--patients", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--peer-reps", type=int, default=40)
    parser.add_argument("--out-dir", type=Path, default=OUT)
    args = parser.parse_args(argv)
    cases = make_cases(args.patients, seed=1)
    cpuwatch.wait_until_quiet({os.getpgrp()})
    ours, ours_s, ours_foreign = timed(radpilot_run, cases, args.reps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _, peer_s, peer_foreign = timed(sklearn_run, cases, args.peer_reps)
    # the same statistics on the peer's replicate count, to compare the intervals
    small, _, _ = timed(radpilot_run, cases, args.peer_reps)
    peer, _, _ = timed(sklearn_run, cases, args.peer_reps)
    scaled = peer_s * args.reps / args.peer_reps
    record = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "cases": len(cases), "patients": args.patients, "subgroups": 10, "reps": args.reps,
        "radpilot_s": ours_s, "radpilot_peak_rss_mib": peak, "radpilot_foreign_cpu_s": ours_foreign,
        "sklearn_s_measured": peer_s, "sklearn_reps": args.peer_reps,
        "sklearn_s_scaled": scaled, "sklearn_foreign_cpu_s": peer_foreign,
        "speedup": scaled / ours_s,
        "auc_all": ours["all"]["auc"],
        "intervals_at_peer_reps": {
            "radpilot_auc_all": [small["all"]["auc"]["low"], small["all"]["auc"]["high"]],
            "sklearn_auc_all": peer["all"]["auc"],
        },
    }  # fmt: skip
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"validation-{record['when'].replace(':', '')}.json"
    path.write_text(json.dumps(record, indent=1))
    print(json.dumps({k: v for k, v in record.items() if k != "auc_all"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
