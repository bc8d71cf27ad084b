"""External validation: the same model and thresholds on two independent labelled sets
(e.g. the internal test set and another site's), side by side, with the difference.

- AUC difference: the two DeLong variances add (independent sets), normal 95% CI.
- Proportions at each package operating point (sensitivity, specificity, PPV, NPV,
  accuracy): Newcombe's hybrid-score CI of the difference, from the two Wilson intervals.

A difference whose CI excludes 0 is marked ``differs``: the model does not perform at the
external site as it did internally, whatever the direction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from radpilot.validation.binary import Options, evaluate_binary
from radpilot.validation.cases import CaseTable
from radpilot.validation.stats import Z95, Estimate, delong
from radpilot.validation.subgroups import newcombe_difference

__all__ = ["compare_sets"]

_COUNTS = {
    "sensitivity": ("tp", ("tp", "fn")),
    "specificity": ("tn", ("tn", "fp")),
    "ppv": ("tp", ("tp", "fp")),
    "npv": ("tn", ("tn", "fn")),
    "accuracy": ("tp+tn", ("tp", "fn", "tn", "fp")),
}


def _auc_difference(first: CaseTable, second: CaseTable) -> Estimate | None:
    a, b = delong(first.scores, first.labels), delong(second.scores, second.labels)
    if a is None or b is None:
        return None
    d, half = b[0] - a[0], Z95 * math.sqrt(a[1] + b[1])  # independent sets: variances add
    return Estimate(d, d - half, d + half, "DeLong, independent sets", a[2] + b[2])


def _k(point: dict[str, Any], numerator: str) -> int:
    return sum(int(point[p]) for p in numerator.split("+"))


def compare_sets(
    first: CaseTable,
    second: CaseTable,
    operating_points: Mapping[str, float],
    names: tuple[str, str] = ("internal", "external"),
    options: Options | None = None,
    first_report: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Both sets' metrics and ``second - first`` with its CI, per package operating point.

    ``first_report``: ``first``'s :func:`evaluate_binary` with the same points and options,
    where the caller has it already. AUC intervals of the difference use DeLong's
    variances (unclustered); the sets are assumed to share no patient.
    """
    options = options or Options()
    reports = {
        names[0]: first_report or evaluate_binary(first, operating_points, options),
        names[1]: evaluate_binary(second, operating_points, options),
    }
    auc = _auc_difference(first, second)
    differences: dict[str, Any] = {"auc": None if auc is None else auc.to_dict()}
    if auc is not None:
        differences["auc"]["differs"] = not auc.low <= 0.0 <= auc.high
    for point in operating_points:
        a = reports[names[0]]["operating_points"][point]
        b = reports[names[1]]["operating_points"][point]
        rows = {}
        for metric, (numerator, denominator) in _COUNTS.items():
            diff = newcombe_difference(
                _k(b, numerator), sum(int(b[d]) for d in denominator),
                _k(a, numerator), sum(int(a[d]) for d in denominator),
            )  # fmt: skip
            rows[metric] = {**diff.to_dict(), "differs": not diff.low <= 0.0 <= diff.high}
        differences[point] = rows
    return {"names": list(names), "reports": reports, "difference": differences}
