"""Subgroups and equity: the same operating point, group by group.

For each attribute (site, manufacturer, sex, age band, view, ...) and each of its values:
counts, sensitivity and specificity with Wilson CIs, the AUC with DeLong's CI, and the
difference from all other cases with Newcombe's hybrid-score CI (method 10, Stat Med
1998; 17:873) and a two-sided two-proportion z-test. The p-values of all comparisons in
one analysis are adjusted together (Holm 1979), so that "differs" is said at a family-wise
5%. When patients have several cases, all of it comes from one patient bootstrap instead:
the group intervals, the difference from the rest (percentile CI) and its test (Wald, with
the bootstrap standard error), since a patient's studies are not independent. A metric
whose CI is wider than ``max_ci_width`` is "too few cases to judge" and is not used for an
equity gap. The
equity summary names, per attribute, the two groups furthest apart in sensitivity and
in specificity among those that can be judged.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from radpilot.validation import bootstrap as bs
from radpilot.validation.cases import CaseTable
from radpilot.validation.stats import Z95, Estimate, delong_auc, wilson

__all__ = [
    "AGE_BANDS",
    "SubgroupOptions",
    "age_band",
    "analyse_subgroups",
    "holm",
    "newcombe_difference",
]

#: Age bands, years: [low, high). The first three are paediatric.
AGE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("0-1 (infant)", 0, 2),
    ("2-11 (child)", 2, 12),
    ("12-17 (adolescent)", 12, 18),
    ("18-39", 18, 40),
    ("40-64", 40, 65),
    ("65-79", 65, 80),
    ("80+", 80, math.inf),
)
_DICOM_AGE = re.compile(r"^(\d{3})([DWMY])$")
_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


@dataclass(frozen=True)
class SubgroupOptions:
    """Which attributes, and when a group is too small to judge."""

    attributes: tuple[str, ...] | None = None  # None: every attribute of the cases
    max_ci_width: float = 0.30
    alpha: float = 0.05
    max_groups: int = 50  # an attribute with more distinct values is an identifier: skipped
    bootstrap: int = 2000  # replicates, when patients have several cases
    seed: int = 0


def age_band(value: str) -> str:
    """The band of a DICOM Age String (``005Y``, ``018M``) or a number of years; ``""``
    where the age is unknown."""
    text = value.strip().upper()
    match = _DICOM_AGE.match(text)
    try:
        years = int(match.group(1)) * _UNIT_YEARS[match.group(2)] if match else float(text)
    except ValueError:
        return ""
    return next((name for name, low, high in AGE_BANDS if low <= years < high), "")


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def newcombe_difference(k1: int, n1: int, k2: int, n2: int) -> Estimate:
    """``k1/n1 - k2/n2`` with Newcombe's hybrid-score 95% CI (NaN if a side is empty)."""
    if n1 == 0 or n2 == 0:
        return Estimate(math.nan, math.nan, math.nan, "Newcombe", n1 + n2)
    a, b = wilson(k1, n1), wilson(k2, n2)
    d = a.value - b.value
    low = d - math.sqrt((a.value - a.low) ** 2 + (b.high - b.value) ** 2)
    high = d + math.sqrt((a.high - a.value) ** 2 + (b.value - b.low) ** 2)
    return Estimate(d, max(-1.0, low), min(1.0, high), "Newcombe", n1 + n2)


def _z_test(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p of the pooled two-proportion z-test (1.0 where it is undefined)."""
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    return 2.0 * (1.0 - _phi(abs(k1 / n1 - k2 / n2) / se))


def holm(pvalues: list[float]) -> list[float]:
    order = sorted(range(len(pvalues)), key=pvalues.__getitem__)
    adjusted = [1.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def _metric(k: int, n: int, rest_k: int, rest_n: int, width: float) -> dict[str, Any]:
    est = wilson(k, n)
    return {
        **est.to_dict(),
        "judgeable": n > 0 and est.high - est.low <= width,
        "difference_from_rest": newcombe_difference(k, n, rest_k, rest_n).to_dict(),
        "p": _z_test(k, n, rest_k, rest_n),
        "test": "two-proportion z-test",
    }


def _group(
    cases: CaseTable, member: np.ndarray, called: np.ndarray, options: SubgroupOptions
) -> dict[str, Any]:
    truth = cases.labels == 1
    counts = {}
    for side, mask in (("in", member), ("out", ~member)):
        counts[side] = (
            int(np.sum(mask & truth & called)), int(np.sum(mask & truth)),
            int(np.sum(mask & ~truth & ~called)), int(np.sum(mask & ~truth)),
        )  # fmt: skip
    tp, pos, tn, neg = counts["in"]
    rtp, rpos, rtn, rneg = counts["out"]
    auc = delong_auc(cases.scores[member], cases.labels[member])
    return {
        "n": int(member.sum()),
        "positives": pos,
        "negatives": neg,
        "sensitivity": _metric(tp, pos, rtp, rpos, options.max_ci_width),
        "specificity": _metric(tn, neg, rtn, rneg, options.max_ci_width),
        "auc": None if auc is None else auc.to_dict(),
    }


def _gaps(groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for metric in ("sensitivity", "specificity"):
        usable = {g: v[metric]["value"] for g, v in groups.items() if v[metric]["judgeable"]}
        if len(usable) < 2:
            out[metric] = None
            continue
        high, low = max(usable, key=usable.__getitem__), min(usable, key=usable.__getitem__)
        out[metric] = {"gap": usable[high] - usable[low], "highest": high, "lowest": low}
    return out


def _difference(hit_in: np.ndarray, in_: np.ndarray, hit_out: np.ndarray,
                out: np.ndarray) -> bs.Linear:  # fmt: skip
    """Weighted ``rate(in) - rate(out)`` per replicate."""

    def combine(sums: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            result: np.ndarray = sums[:, 0] / sums[:, 1] - sums[:, 2] / sums[:, 3]
        return result

    columns = np.stack([np.asarray(c, np.float64) for c in (hit_in, in_, hit_out, out)], 1)
    return bs.Linear(columns, combine)


def _patient_intervals(
    cases: CaseTable, called: np.ndarray, attributes: dict[str, Any], options: SubgroupOptions
) -> None:
    """Replace the Wilson intervals, Newcombe differences and z-tests by patient-bootstrap
    ones (one pass over the replicates for every group): a group's rate, its difference
    from the rest with the percentile CI, and a Wald test of that difference with the
    bootstrap standard error."""
    truth = cases.labels == 1
    statistics: dict[str, tuple[float, bs.Linear]] = {}
    places = {}
    for name, attribute in attributes.items():
        for group, entry in attribute["groups"].items():
            member = attribute["values"] == group
            for metric, hit, positive in (("sensitivity", called, truth),
                                          ("specificity", ~called, ~truth)):  # fmt: skip
                among, rest = member & positive, ~member & positive
                if not among.any():
                    continue
                key = f"{name}\x00{group}\x00{metric}"
                statistics[key] = (entry[metric]["value"], bs.ratio(hit & among, among))
                places[key] = entry[metric]
                if rest.any():
                    diff = entry[metric]["difference_from_rest"]["value"]
                    statistics[key + "\x00diff"] = (
                        diff, _difference(hit & among, among, hit & rest, rest))  # fmt: skip
    found = bs.intervals(statistics, cases.patient_index, options.bootstrap, options.seed)
    for key, estimate in found.items():
        if key.endswith("\x00diff"):
            place = places[key.removesuffix("\x00diff")]
            place["difference_from_rest"] = estimate.to_dict()
            se = (estimate.high - estimate.low) / (2 * Z95)
            place["p"] = (
                2.0 * (1.0 - _phi(abs(estimate.value) / se))
                if se > 0 and np.isfinite(se)
                else (1.0 if estimate.value == 0 else 0.0)
            )
            place["test"] = "Wald, patient-bootstrap standard error"
        else:
            place = places[key]
            place.update(low=estimate.low, high=estimate.high, method=estimate.method)
            place["judgeable"] = bool(estimate.high - estimate.low <= options.max_ci_width)


def analyse_subgroups(
    cases: CaseTable, threshold: float, options: SubgroupOptions | None = None
) -> dict[str, Any]:
    """Every attribute's groups at ``threshold``, Holm-adjusted, with the equity summary.

    Cases with an empty value for an attribute form the group ``(unknown)``.
    """
    options = options or SubgroupOptions()
    called = cases.scores >= threshold
    names = options.attributes or tuple(sorted(cases.attributes))
    analysis: dict[str, Any] = {"threshold": threshold, "attributes": {}, "skipped": {}}
    tests: list[tuple[str, str, str]] = []
    for name in names:
        values = np.asarray([v or "(unknown)" for v in cases.attributes.get(name, [])])
        if len(values) != len(cases):
            analysis["skipped"][name] = "not an attribute of these cases"
            continue
        distinct = sorted(set(values.tolist()))
        if len(distinct) < 2 or len(distinct) > options.max_groups:
            analysis["skipped"][name] = f"{len(distinct)} distinct value(s)"
            continue
        groups = {v: _group(cases, values == v, called, options) for v in distinct}
        analysis["attributes"][name] = {"groups": groups, "values": values}
        tests += [(name, v, m) for v in distinct for m in ("sensitivity", "specificity")]
    if cases.clustered:
        _patient_intervals(cases, called, analysis["attributes"], options)
    for attribute in analysis["attributes"].values():
        del attribute["values"]
        attribute["equity"] = _gaps(attribute["groups"])
    adjusted = holm([analysis["attributes"][a]["groups"][v][m]["p"] for a, v, m in tests])
    for (a, v, m), p in zip(tests, adjusted, strict=True):
        entry = analysis["attributes"][a]["groups"][v][m]
        entry["p_holm"] = p
        entry["differs"] = bool(p < options.alpha)
    analysis["comparisons"] = len(tests)
    return analysis
