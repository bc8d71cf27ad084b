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
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
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
    tested = len(CATEGORICAL) + len(numeric)
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
    rate = None
    ref_outcomes = [r.positive for r in reference if r.positive is not None]
    live_outcomes = [r.positive for r in live if r.positive is not None]
    if validated_rate is not None or ref_outcomes:
        base = (
            validated_rate if validated_rate is not None else sum(ref_outcomes) / len(ref_outcomes)
        )
        rate = rate_drift(base, live_outcomes, limits.alpha, limits)
    return Comparison(fields, rate)
