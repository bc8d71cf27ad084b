"""Percentile bootstrap that resamples patients, vectorised as case weights.

A patient with several studies is one unit of evidence: resampling studies as if they
were independent makes intervals too narrow. Each replicate draws patients with
replacement; a case's weight is how often its patient was drawn, so every statistic
becomes a weighted sum over cases (a matrix product over replicates) and no data are
copied. Replicates are made in chunks so that memory stays at ``chunk x cases``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt

from radpilot.validation.stats import Estimate

__all__ = ["Weights", "interval", "replicate_weights", "weighted_auc", "weighted_proportion"]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Weights = npt.NDArray[np.float64]  # (replicates, cases)


def replicate_weights(
    patient_index: Ints, reps: int, seed: int, chunk: int = 100
) -> Iterator[Weights]:
    """Case weights for ``reps`` replicates, ``chunk`` at a time (the last may be shorter).

    The same ``patient_index``, ``reps``, ``seed`` and ``chunk`` give the same weights.
    """
    rng = np.random.default_rng(seed)
    patients = int(patient_index.max()) + 1 if len(patient_index) else 0
    done = 0
    while done < reps:
        size = min(chunk, reps - done)
        drawn = rng.integers(0, patients, size=(size, patients))
        counts = np.zeros((size, patients))
        np.add.at(counts, (np.arange(size)[:, None], drawn), 1.0)
        yield counts[:, patient_index]
        done += size


def weighted_proportion(weights: Weights, numerator: npt.NDArray[np.bool_],
                        denominator: npt.NDArray[np.bool_]) -> Floats:  # fmt: skip
    """Per replicate: weighted count of ``numerator & denominator`` over that of
    ``denominator`` (NaN where a replicate has no denominator case)."""
    den = weights @ denominator.astype(np.float64)
    num = weights @ (numerator & denominator).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: Floats = num / den
    return out


def weighted_auc(weights: Weights, scores: Floats, labels: Ints) -> Floats:
    """Per replicate: the weighted Mann-Whitney AUC (ties count one half)."""
    order = np.argsort(scores, kind="mergesort")
    s, y, w = scores[order], labels[order], weights[:, order]
    neg = np.where(y == 0, w, 0.0)
    pos = np.where(y == 1, w, 0.0)
    # negatives strictly below each case, and tied with it, from cumulative sums per group
    starts = np.r_[0, np.nonzero(np.diff(s))[0] + 1]
    group = np.cumsum(np.r_[0, np.diff(s) != 0])
    cum = np.cumsum(neg, axis=1)
    below_group = np.where(starts > 0, cum[:, np.maximum(starts - 1, 0)], 0.0)
    ends = np.r_[starts[1:], len(s)] - 1
    in_group = cum[:, ends] - below_group
    credit = below_group[:, group] + 0.5 * in_group[:, group]
    with np.errstate(invalid="ignore", divide="ignore"):
        out: Floats = (pos * credit).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))
    return out


def interval(
    value: float,
    statistic: Callable[[Weights], Floats],
    patient_index: Ints,
    reps: int,
    seed: int,
    what: str = "bootstrap by patient",
) -> Estimate:
    """``value`` with the percentile 95% CI of ``statistic`` over patient resamples.

    Replicates where the statistic is undefined (NaN) are left out of the percentiles;
    the method string says how many replicates were used.
    """
    parts = [statistic(w) for w in replicate_weights(patient_index, reps, seed)]
    values = np.concatenate(parts) if parts else np.empty(0)
    values = values[np.isfinite(values)]
    n = int(patient_index.max()) + 1 if len(patient_index) else 0
    if len(values) == 0:
        return Estimate(value, float("nan"), float("nan"), f"{what} (0 usable)", n)
    low, high = np.quantile(values, [0.025, 0.975])
    return Estimate(value, float(low), float(high), f"{what} ({len(values)} replicates)", n)
