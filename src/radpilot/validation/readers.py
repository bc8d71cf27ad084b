"""Several readers: their agreement, the reference standard they make, and the model
against each of them on the same cases.

- Cohen's kappa for every pair of readers on the cases both read; Fleiss' kappa (1971)
  over the cases every reader read. Both with a percentile bootstrap 95% CI over cases
  (2,000 resamples, seeded), as weighted sums like the rest of the validation.
- The reference standard: majority of the readers (a tie leaves the case out), or the
  reads of a named adjudicator.
- Each reader against the reference formed *without* that reader (the majority of the
  others; their own vote would flatter them), and the model on the same cases against
  the same reference: sensitivity and specificity (Wilson CIs) of both, and McNemar's
  exact test on the cases where they disagree.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from radpilot.data.adjudication import majority_vote
from radpilot.validation import bootstrap as bs
from radpilot.validation.stats import Estimate, wilson

__all__ = ["cohen_kappa", "compare_readers", "fleiss_kappa", "majority", "mcnemar_exact"]

Floats = npt.NDArray[np.float64]
Reads = Mapping[str, Mapping[str, int]]  # reader -> case -> label


def _kappa_from_sums(sums: Floats) -> Floats:
    # columns: agree, a=1, b=1, n  (binary labels)
    agree, a1, b1, n = sums[:, 0], sums[:, 1], sums[:, 2], sums[:, 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        po = agree / n
        pe = (a1 / n) * (b1 / n) + (1 - a1 / n) * (1 - b1 / n)
        out: Floats = (po - pe) / (1 - pe)
    return out


def cohen_kappa(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], reps: int = 2000,
                seed: int = 0) -> Estimate:  # fmt: skip
    """Cohen's kappa of two binary readers on the same cases, with a bootstrap CI."""
    columns = np.stack([a == b, a == 1, b == 1, np.ones(len(a), bool)], axis=1).astype(float)
    value = float(_kappa_from_sums(columns.sum(axis=0)[None])[0])
    est = bs.interval(value, bs.Linear(columns, _kappa_from_sums), np.arange(len(a)), reps,
                      seed, "bootstrap over cases")  # fmt: skip
    return est


def fleiss_kappa(counts: npt.NDArray[np.int64], reps: int = 2000, seed: int = 0) -> Estimate:
    """Fleiss' kappa from ``(subjects, categories)`` counts of raters per category (every
    subject rated by the same number of raters), with a bootstrap CI over subjects."""
    counts = np.asarray(counts, dtype=np.float64)
    raters = counts.sum(axis=1)
    if len(counts) == 0 or not np.all(raters == raters[0]) or raters[0] < 2:
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of raters per subject")
    r = raters[0]
    agreement = ((counts**2).sum(axis=1) - r) / (r * (r - 1))
    columns = np.column_stack([agreement, counts, np.ones(len(counts))])

    def combine(sums: Floats) -> Floats:
        n = sums[:, -1]
        p_bar = sums[:, 0] / n
        shares = sums[:, 1:-1] / (n * r)[:, None]
        p_e = (shares**2).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out: Floats = (p_bar - p_e) / (1 - p_e)
        return out

    value = float(combine(columns.sum(axis=0)[None])[0])
    return bs.interval(value, bs.Linear(columns, combine), np.arange(len(counts)), reps, seed,
                       "bootstrap over subjects")  # fmt: skip


def majority(reads: Reads, case: str, leave_out: str | None = None) -> int | None:
    """The majority label of ``case`` over the readers (but ``leave_out``); None on a tie
    or when nobody read it."""
    return majority_vote(r[case] for name, r in reads.items() if name != leave_out and case in r)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return float(min(1.0, 2 * tail))


def _versus(model_calls: Mapping[str, bool], reads: Reads, reader: str) -> dict[str, Any]:
    own = reads[reader]
    rows = [(case, majority(reads, case, leave_out=reader)) for case in own]
    usable = [(c, ref) for c, ref in rows if ref is not None and c in model_calls]
    out: dict[str, Any] = {"cases": len(usable)}
    for metric, truth in (("sensitivity", 1), ("specificity", 0)):
        cases = [c for c, ref in usable if ref == truth]
        reader_right = [(own[c] == truth) for c in cases]
        model_right = [(int(model_calls[c]) == truth) for c in cases]
        only_reader = sum(r and not m for r, m in zip(reader_right, model_right, strict=True))
        only_model = sum(m and not r for r, m in zip(reader_right, model_right, strict=True))
        out[metric] = {
            "reader": wilson(sum(reader_right), len(cases)).to_dict(),
            "model": wilson(sum(model_right), len(cases)).to_dict(),
            "only_reader_right": only_reader,
            "only_model_right": only_model,
            "p_mcnemar": mcnemar_exact(only_reader, only_model),
        }
    return out


def compare_readers(reads: Reads, model_calls: Mapping[str, bool], reps: int = 2000,
                    seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Agreement between readers, the majority reference, and the model against each."""
    names = sorted(reads)
    pairs = {}
    for a, b in itertools.combinations(names, 2):
        common = sorted(set(reads[a]) & set(reads[b]))
        if len(common) < 2:
            continue
        x = np.asarray([reads[a][c] for c in common], dtype=np.int64)
        y = np.asarray([reads[b][c] for c in common], dtype=np.int64)
        pairs[f"{a} / {b}"] = {
            "cases": len(common),
            "kappa": cohen_kappa(x, y, reps, seed).to_dict(),
        }
    everyone = sorted(set.intersection(*(set(reads[n]) for n in names))) if names else []
    fleiss = None
    if len(names) >= 2 and len(everyone) >= 2:
        counts = np.asarray(
            [[sum(reads[n][c] == k for n in names) for k in (0, 1)] for c in everyone]
        )
        fleiss = {"cases": len(everyone), "kappa": fleiss_kappa(counts, reps, seed).to_dict()}
    cases = sorted(set().union(*(set(r) for r in reads.values())))
    reference = {c: majority(reads, c) for c in cases}
    return {
        "readers": names,
        "cohen": pairs,
        "fleiss": fleiss,
        "reference": {"method": "majority of readers (ties left out)",
                      "cases": sum(v is not None for v in reference.values()),
                      "ties": sum(v is None for v in reference.values())},
        "model_vs_readers": {n: _versus(model_calls, reads, n) for n in names},
    }  # fmt: skip
