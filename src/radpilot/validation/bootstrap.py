"""Percentile bootstrap that resamples patients, vectorised as case weights.

A patient with several studies is one unit of evidence: resampling studies as if they
were independent makes intervals too narrow. Each replicate draws patients with
replacement; a case's weight is how often its patient was drawn, so every statistic
becomes a weighted sum over cases (a matrix product over replicates) and no data are
copied. Replicates are made in chunks so that memory stays at ``chunk x cases``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from radpilot.validation.stats import Estimate

__all__ = [
    "Linear",
    "Weights",
    "interval",
    "intervals",
    "ratio",
    "replicate_weights",
    "weighted_auc",
]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Weights = npt.NDArray[np.float64]  # (replicates, cases)


@dataclass(frozen=True)
class Linear:
    """A statistic of weighted sums: ``combine(W @ columns)``, with ``columns`` stacked
    as ``(cases, k)``. Every :class:`Linear` of one :func:`intervals` call shares a single
    matrix product per chunk of replicates, so the weights are read once, not once per
    statistic."""

    columns: Floats  # (cases, k)
    combine: Callable[[Floats], Floats]  # (replicates, k) -> (replicates,)


def ratio(
    numerator: npt.NDArray[np.bool_] | Floats, denominator: npt.NDArray[np.bool_] | Floats
) -> Linear:
    """Weighted ``sum(numerator) / sum(denominator)`` per replicate (NaN where 0 / 0)."""

    def combine(sums: Floats) -> Floats:
        with np.errstate(invalid="ignore", divide="ignore"):
            out: Floats = sums[:, 0] / sums[:, 1]
        return out

    stacked = np.stack([np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)], 1)
    return Linear(stacked, combine)


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
        drawn += (np.arange(size) * patients)[:, None]  # one bin range per replicate
        counts = np.bincount(drawn.ravel(), minlength=size * patients).reshape(size, patients)
        yield counts[:, patient_index].astype(np.float64)
        done += size


def weighted_auc(weights: Weights, scores: Floats, labels: Ints) -> Floats:
    """Per replicate: the weighted Mann-Whitney AUC (ties count one half)."""
    if len(scores) > 1 and np.all(scores[1:] >= scores[:-1]):
        s, y, w = scores, labels, weights  # already in score order: no copy
    else:
        order = np.argsort(scores, kind="mergesort")
        s, y, w = scores[order], labels[order], weights[:, order]
    negative = (y == 0).astype(np.float64)
    positives = np.nonzero(y == 1)[0]
    cum = np.cumsum(w * negative, axis=1)  # negative weight up to and including each case
    total_neg = cum[:, -1]
    total_pos = w[:, positives].sum(axis=1)
    if len(s) < 2 or np.all(s[1:] > s[:-1]):
        # no ties: a positive's credit is the negative weight before it
        credit = cum[:, positives]
    else:
        # ties: the negative weight strictly below the case's group, plus half of the group's
        starts = np.r_[0, np.nonzero(np.diff(s))[0] + 1]
        ends = np.r_[starts[1:], len(s)] - 1
        group = np.cumsum(np.r_[0, np.diff(s) != 0])[positives]
        before = np.where(starts > 0, cum[:, np.maximum(starts - 1, 0)], 0.0)
        credit = before[:, group] + 0.5 * (cum[:, ends] - before)[:, group]
    numerator = np.einsum("ij,ij->i", w[:, positives], credit)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: Floats = numerator / (total_pos * total_neg)
    return out


def intervals(
    statistics: Mapping[str, tuple[float, Callable[[Weights], Floats] | Linear]],
    patient_index: Ints,
    reps: int,
    seed: int,
    what: str = "bootstrap by patient",
) -> dict[str, Estimate]:
    """Each ``name: (value, statistic)`` with the percentile 95% CI of its statistic, all
    from the same patient resamples (one pass over the replicates).

    Replicates where a statistic is undefined (NaN) are left out of its percentiles; the
    method string says how many replicates were used.
    """
    linear = {k: s for k, (_, s) in statistics.items() if isinstance(s, Linear)}
    other = {k: s for k, (_, s) in statistics.items() if not isinstance(s, Linear)}
    columns = np.concatenate([s.columns for s in linear.values()], axis=1) if linear else None
    offsets = np.cumsum([0, *(s.columns.shape[1] for s in linear.values())])
    parts: dict[str, list[Floats]] = {name: [] for name in statistics}
    for weights in replicate_weights(patient_index, reps, seed):
        if columns is not None:
            sums = weights @ columns
            for i, (name, stat) in enumerate(linear.items()):
                parts[name].append(stat.combine(sums[:, offsets[i] : offsets[i + 1]]))
        for name, function in other.items():
            parts[name].append(function(weights))
    n = int(patient_index.max()) + 1 if len(patient_index) else 0
    out = {}
    for name, (value, _) in statistics.items():
        values = np.concatenate(parts[name]) if parts[name] else np.empty(0)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            out[name] = Estimate(value, float("nan"), float("nan"), f"{what} (0 usable)", n)
            continue
        low, high = np.quantile(values, [0.025, 0.975])
        method = f"{what} ({len(values)} replicates)"
        out[name] = Estimate(value, float(low), float(high), method, n)
    return out


def interval(
    value: float,
    statistic: Callable[[Weights], Floats] | Linear,
    patient_index: Ints,
    reps: int,
    seed: int,
    what: str = "bootstrap by patient",
) -> Estimate:
    """``value`` with the percentile 95% CI of ``statistic`` (see :func:`intervals`)."""
    return intervals({"x": (value, statistic)}, patient_index, reps, seed, what)["x"]
