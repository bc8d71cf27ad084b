"""Drift statistics: a reference window of studies against a live window, field by field.

SciPy gives the tests (``chi2_contingency``, ``ks_2samp``, ``wasserstein_distance``,
``binomtest``): maintained, BSD-licensed, and already a dependency. alibi-detect is not
open source for commercial use (Business Source License); Evidently and NannyML would
add a large dependency for the same few tests. radpilot adds the DICOM-specific part —
which fields, new-category detection, effect sizes a clinician can read — itself.

A field drifts when the test's p-value is below ``alpha`` divided by the number of
fields tested (Bonferroni within one comparison) **and** the effect is large enough to
matter: PSI of at least 0.2 for categories, a Wasserstein distance of at least 0.5
reference standard deviations for numbers. A category never seen in the reference that
reaches ``min_new`` studies in the live window drifts by itself ("a scanner never seen
in validation started sending studies"). The positive rate drifts when a two-sided
binomial test against the reference rate (or the validated rate) is below ``alpha`` and
the rate moved by at least 0.1.

The model's **embedding** (its penultimate layer, where the manifest declares it) is one
more field, tested with the kernel maximum mean discrepancy (MMD, Gretton et al. 2012):
a Gaussian kernel whose bandwidth is the median distance between all the vectors of both
windows, the unbiased MMD² as the statistic, and a permutation test for its p-value
(:func:`mmd_test`). SciPy gives the distances; the permutations are done here, in
rounds of 500 as one matrix product each, because the p-value must reach the
Bonferroni-corrected level (0.01 over some 25 fields needs several thousand
permutations) in under a second (0.74 s for two windows at the 500-row cap, measured
here). frouros (BSD) and hyppo (which needs numba) also offer an MMD test; the estimator
is a few lines over SciPy's distances, and writing it here ties the permutation count to
the corrected level. Only studies
whose results come from the live window's newest model version are compared (two
versions' embeddings are different spaces), and the embedding drifts when the p-value is
below the corrected ``alpha`` and MMD² is at least ``min_mmd``.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from radpilot.monitoring.features import CATEGORICAL, NUMERIC, StudyFeatures

__all__ = [
    "MISSING",
    "Comparison",
    "DriftThresholds",
    "FieldDrift",
    "RateDrift",
    "categorical_drift",
    "compare",
    "embedding_drift",
    "mmd_test",
    "numeric_drift",
    "psi",
    "rate_drift",
]

MISSING = "(missing)"
_EPS = 1e-4


@dataclass(frozen=True)
class DriftThresholds:
    """When a field counts as drifted (see the module docstring)."""

    alpha: float = 0.01
    min_psi: float = 0.2
    min_shift_sd: float = 0.5
    min_new: int = 3
    min_rate_change: float = 0.1
    min_values: int = 10  # fewer values on either side: not tested
    bonferroni: bool = True  # alpha divided by the number of fields tested
    min_mmd: float = 0.05  # embedding: unbiased MMD² with the median-distance kernel
    max_mmd_rows: int = 500  # embedding: a window larger than this is subsampled


@dataclass(frozen=True)
class FieldDrift:
    """One field's comparison."""

    name: str
    kind: str  # categorical | numeric
    statistic: float  # PSI, or the Wasserstein distance in reference SDs
    p_value: float
    drifted: bool
    new_categories: dict[str, int] = field(default_factory=dict)
    reference_n: int = 0
    live_n: int = 0
    detail: str = ""


@dataclass(frozen=True)
class RateDrift:
    """The positive rate against the reference (or validated) rate."""

    reference_rate: float
    live_rate: float
    live_n: int
    p_value: float
    drifted: bool


@dataclass(frozen=True)
class Comparison:
    """A reference window against a live window."""

    fields: list[FieldDrift]
    rate: RateDrift | None

    @property
    def drifted(self) -> list[str]:
        """The names of the fields (and ``positive_rate``) that drifted."""
        names = [f.name for f in self.fields if f.drifted]
        if self.rate is not None and self.rate.drifted:
            names.append("positive_rate")
        return names


def psi(reference: Sequence[str], live: Sequence[str]) -> float:
    """Population stability index over the categories of both (proportions smoothed)."""
    ref, now = Counter(reference), Counter(live)
    total = 0.0
    for key in set(ref) | set(now):
        r = max(ref[key] / max(len(reference), 1), _EPS)
        n = max(now[key] / max(len(live), 1), _EPS)
        total += (n - r) * math.log(n / r)
    return total


def categorical_drift(
    name: str,
    reference: Sequence[str | None],
    live: Sequence[str | None],
    alpha: float,
    limits: DriftThresholds,
) -> FieldDrift:
    """PSI, chi-square test of homogeneity, and categories new in ``live``."""
    ref = [MISSING if v is None or v == "" else v for v in reference]
    now = [MISSING if v is None or v == "" else v for v in live]
    seen = set(ref)
    new = {k: n for k, n in Counter(now).items() if k not in seen and k != MISSING}
    categories = sorted(set(ref) | set(now))
    p_value = 1.0
    if len(categories) > 1 and ref and now:
        table = np.array(
            [[Counter(ref)[c] for c in categories], [Counter(now)[c] for c in categories]]
        )
        p_value = float(stats.chi2_contingency(table)[1])
    value = psi(ref, now)
    big_new = {k: n for k, n in new.items() if n >= limits.min_new}
    drifted = bool(big_new) or (p_value < alpha and value >= limits.min_psi)
    detail = ", ".join(f"new: {k} ({n})" for k, n in sorted(big_new.items()))
    return FieldDrift(name, "categorical", value, p_value, drifted, new, len(ref), len(now), detail)


def numeric_drift(
    name: str,
    reference: Sequence[float | None],
    live: Sequence[float | None],
    alpha: float,
    limits: DriftThresholds,
) -> FieldDrift | None:
    """Kolmogorov-Smirnov test and the Wasserstein distance in reference SDs; None when
    either side has fewer than ``limits.min_values`` values."""
    ref = np.array([v for v in reference if v is not None and math.isfinite(v)], dtype=float)
    now = np.array([v for v in live if v is not None and math.isfinite(v)], dtype=float)
    if len(ref) < limits.min_values or len(now) < limits.min_values:
        return None
    spread = float(ref.std())
    if spread == 0.0 and float(now.std()) == 0.0:
        same = bool(np.all(now == ref[0]))
        return FieldDrift(
            name,
            "numeric",
            0.0 if same else math.inf,
            1.0 if same else 0.0,
            not same,
            {},
            len(ref),
            len(now),
            "" if same else "the constant value changed",
        )
    distance = float(stats.wasserstein_distance(ref, now))
    shift = distance / spread if spread > 0 else math.inf
    with warnings.catch_warnings():  # SciPy falls back to the asymptotic p-value itself
        warnings.filterwarnings("ignore", "ks_2samp: Exact calculation unsuccessful")
        p_value = float(stats.ks_2samp(ref, now).pvalue)
    drifted = p_value < alpha and shift >= limits.min_shift_sd
    detail = f"median {np.median(ref):.4g} -> {np.median(now):.4g}"
    return FieldDrift(name, "numeric", shift, p_value, drifted, {}, len(ref), len(now), detail)


def rate_drift(
    reference_rate: float, live: Sequence[bool], alpha: float, limits: DriftThresholds
) -> RateDrift | None:
    """A two-sided exact binomial test of the live positive rate; None without results."""
    if not live:
        return None
    positives = int(sum(live))
    rate = positives / len(live)
    p_value = float(
        stats.binomtest(positives, len(live), min(max(reference_rate, 1e-9), 1 - 1e-9)).pvalue
    )
    drifted = p_value < alpha and abs(rate - reference_rate) >= limits.min_rate_change
    return RateDrift(reference_rate, rate, len(live), p_value, drifted)


def _mmd_parts(
    kernel: npt.NDArray[np.float64], first: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Unbiased MMD² for each column of ``first`` (1.0 marks the first sample's rows)."""
    total = kernel.sum()
    rows = kernel.sum(axis=1)
    m = first.sum(axis=0)
    n = len(kernel) - m
    s_xx = np.einsum("ib,ib->b", first, kernel @ first)
    s_xy = rows @ first - s_xx
    s_yy = total - 2 * s_xy - s_xx
    diagonal = 1.0  # a Gaussian kernel
    return (  # type: ignore[no-any-return]
        (s_xx - m * diagonal) / (m * (m - 1))
        + (s_yy - n * diagonal) / (n * (n - 1))
        - 2 * s_xy / (m * n)
    )


def mmd_test(
    reference: npt.NDArray[np.floating[Any]],
    live: npt.NDArray[np.floating[Any]],
    alpha: float = 0.01,
    *,
    seed: int = 0,
    max_permutations: int | None = None,
) -> tuple[float, float]:
    """Unbiased MMD² between two samples of vectors and its permutation p-value.

    Permutations are drawn in rounds of 500 until the p-value is clearly above ``alpha``
    (ten permuted statistics at least as large as the observed one) or
    ``max_permutations`` (default: enough for a p-value of ``alpha / 5``) were drawn.
    The p-value is ``(1 + exceedances) / (1 + permutations)``, never zero.

    Raises
    ------
    ValueError
        If either sample has fewer than two rows, or their widths differ.
    """
    from scipy.spatial.distance import cdist

    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(live, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or len(x) < 2 or len(y) < 2:
        raise ValueError(
            f"MMD needs two samples of >= 2 equal-width rows, not {x.shape}, {y.shape}"
        )
    pooled = np.vstack([x, y])
    distances = cdist(pooled, pooled, "sqeuclidean")
    median = float(np.median(distances[np.triu_indices(len(pooled), k=1)]))
    kernel = np.exp(-distances / max(median, 1e-12))  # exp(-d² / median d²)
    observed_mask = np.zeros((len(pooled), 1))
    observed_mask[: len(x)] = 1.0
    observed = float(_mmd_parts(kernel, observed_mask)[0])
    limit = max_permutations or max(1000, math.ceil(5 / alpha))
    rng = np.random.default_rng(seed)
    drawn = exceed = 0
    while drawn < limit and exceed < 10:
        count = min(500, limit - drawn)
        masks = np.zeros((len(pooled), count))
        for column in range(count):
            masks[rng.permutation(len(pooled))[: len(x)], column] = 1.0
        exceed += int(np.count_nonzero(_mmd_parts(kernel, masks) >= observed - 1e-12))
        drawn += count
    return observed, (1 + exceed) / (1 + drawn)


def embedding_drift(
    reference: Sequence[StudyFeatures],
    live: Sequence[StudyFeatures],
    alpha: float,
    limits: DriftThresholds,
) -> FieldDrift | None:
    """MMD between the windows' embeddings of the live window's newest model version;
    None when either side has fewer than ``limits.min_values`` such embeddings."""
    versions = [r.version for r in live if r.embedding is not None]
    if not versions:
        return None
    version = versions[-1]

    def vectors(rows: Sequence[StudyFeatures]) -> list[npt.NDArray[np.float32]]:
        return [r.embedding for r in rows if r.embedding is not None and r.version == version]

    ref, now = vectors(reference), vectors(live)
    widths = {v.size for v in ref} | {v.size for v in now}
    if len(ref) < limits.min_values or len(now) < limits.min_values or len(widths) != 1:
        return None
    rng = np.random.default_rng(0)
    x, y = np.stack(ref), np.stack(now)
    if len(x) > limits.max_mmd_rows:
        x = x[np.sort(rng.choice(len(x), limits.max_mmd_rows, replace=False))]
    if len(y) > limits.max_mmd_rows:
        y = y[np.sort(rng.choice(len(y), limits.max_mmd_rows, replace=False))]
    value, p_value = mmd_test(x, y, alpha)
    drifted = p_value < alpha and value >= limits.min_mmd
    detail = f"MMD² {value:.3g} over {widths.pop()} dimensions, version {version}"
    return FieldDrift("embedding", "embedding", value, p_value, drifted, {}, len(x), len(y), detail)


def compare(
    reference: Sequence[StudyFeatures],
    live: Sequence[StudyFeatures],
    limits: DriftThresholds | None = None,
    validated_rate: float | None = None,
) -> Comparison:
    """Every categorical and numeric field, and the positive rate, live against reference."""
    limits = limits or DriftThresholds()
    numeric = []
    for name in NUMERIC:
        found = numeric_drift(
            name,
            [r.numeric.get(name) for r in reference],
            [r.numeric.get(name) for r in live],
            1.0,
            limits,
        )
        if found is not None:
            numeric.append(found)
    testable = any(r.embedding is not None for r in live)
    tested = len(CATEGORICAL) + len(numeric) + int(testable)
    alpha = limits.alpha / max(tested, 1) if limits.bonferroni else limits.alpha
    fields = [
        categorical_drift(
            name,
            [r.categorical.get(name) for r in reference],
            [r.categorical.get(name) for r in live],
            alpha,
            limits,
        )
        for name in CATEGORICAL
    ]
    for found in numeric:  # re-judged with the corrected alpha
        drifted = found.p_value < alpha and found.statistic >= limits.min_shift_sd
        fields.append(
            FieldDrift(
                found.name,
                found.kind,
                found.statistic,
                found.p_value,
                drifted,
                {},
                found.reference_n,
                found.live_n,
                found.detail,
            )
        )
    embedding = embedding_drift(reference, live, alpha, limits) if testable else None
    if embedding is not None:
        fields.append(embedding)
    rate = None
    ref_outcomes = [r.positive for r in reference if r.positive is not None]
    live_outcomes = [r.positive for r in live if r.positive is not None]
    if validated_rate is not None or ref_outcomes:
        base = (
            validated_rate if validated_rate is not None else sum(ref_outcomes) / len(ref_outcomes)
        )
        rate = rate_drift(base, live_outcomes, limits.alpha, limits)
    return Comparison(fields, rate)
