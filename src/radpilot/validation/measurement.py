"""Validation of a measurement model: agreement with a reference, overall and by subgroup.

A measurement model (cardiothoracic ratio, nodule diameter, ejection fraction, ...)
is judged by how far its values fall from the reference and whether that depends on the
size of the value or on the patient group, not by sensitivity. Per case we have a
measured and a reference value; the numbers:

- Bland-Altman bias and 95% limits of agreement, each with its CI (Bland and Altman
  1999), and the proportional bias: the slope of the differences on the pair means, with
  its CI (a slope away from 0 says the error grows with the value);
- mean absolute error and root mean squared error, with percentile CIs from the patient
  bootstrap (:mod:`radpilot.validation.bootstrap`), so patients with several studies
  count once per draw;
- ICC(2,1) of model and reference (two-way random, absolute agreement, McGraw-Wong CI);
- with a declared tolerance, the share of cases within it (Wilson CI);
- subgroups: per group the bias with its t interval and the MAE, a Welch test of the
  group's differences against the rest, Holm-adjusted over all groups, and "too few to
  judge" when the bias interval is wider than the tolerance (or than the overall limits of
  agreement when no tolerance is declared).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from radpilot.validation.agreement import bland_altman, icc_2_1
from radpilot.validation.bootstrap import Linear, intervals
from radpilot.validation.cases import Exclusion, ValidationDataError
from radpilot.validation.stats import Estimate, wilson
from radpilot.validation.subgroups import age_band, holm

__all__ = [
    "MeasurementCases",
    "evaluate_measurement",
    "measurement_cases",
]

Floats = npt.NDArray[np.float64]

_FIXED = {"case_id", "patient_id", "measured", "reference", "measurement", "unit"}
_MAX_GROUPS = 20
_MIN_GROUP = 3


@dataclass
class MeasurementCases:
    """Paired measured and reference values, one per case, and the cases set aside."""

    name: str
    unit: str
    case_ids: list[str]
    patient_ids: list[str]
    measured: Floats
    reference: Floats
    attributes: dict[str, list[str]] = field(default_factory=dict)
    excluded: list[Exclusion] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.case_ids)

    @property
    def patient_index(self) -> npt.NDArray[np.int64]:
        """Each case's patient as 0..P-1, for the patient bootstrap."""
        order = {p: i for i, p in enumerate(dict.fromkeys(self.patient_ids))}
        return np.asarray([order[p] for p in self.patient_ids], dtype=np.int64)


def _number(text: object) -> float | None:
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def measurement_cases(
    rows: Iterable[Mapping[str, Any]], measurement: str | None = None
) -> MeasurementCases:
    """Cases from rows with ``case_id``, ``measured``, ``reference`` (numbers), and
    optional ``patient_id``, ``measurement`` (its name, when a file holds several),
    ``unit``, and attribute columns for subgroups.

    Raises
    ------
    ValidationDataError
        If the rows hold several measurements and ``measurement`` names none of them,
        or fewer than 3 usable pairs are left.
    """
    rows = list(rows)
    names = sorted({str(r.get("measurement") or "").strip() for r in rows} - {""})
    if measurement is None and len(names) > 1:
        raise ValidationDataError(
            f"the file holds {len(names)} measurements ({', '.join(names)}); name one"
        )
    chosen = measurement or (names[0] if names else "measurement")
    keys: list[str] | None = None
    ids: list[str] = []
    patients: list[str] = []
    measured: list[float] = []
    reference: list[float] = []
    attributes: dict[str, list[str]] = {}
    excluded: list[Exclusion] = []
    units: set[str] = set()
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        if names and str(row.get("measurement") or "").strip() != chosen:
            continue
        case_id = str(row.get("case_id") or "").strip() or f"row {number}"
        if case_id in seen:
            excluded.append(Exclusion(case_id, "duplicate case (first row kept)"))
            continue
        seen.add(case_id)
        value, ref = _number(row.get("measured")), _number(row.get("reference"))
        if value is None or ref is None:
            which = "measured" if value is None else "reference"
            excluded.append(Exclusion(case_id, f"{which} value missing or not a number"))
            continue
        if keys is None:
            keys = [k for k in row if k not in _FIXED]
        ids.append(case_id)
        patients.append(str(row.get("patient_id") or "").strip() or f"case:{case_id}")
        measured.append(value)
        reference.append(ref)
        if row.get("unit"):
            units.add(str(row["unit"]).strip())
        for key in keys:
            cell = row.get(key)
            attributes.setdefault(key, []).append("" if cell is None else str(cell))
    if len(units) > 1:
        raise ValidationDataError(f"{chosen}: rows in different units ({', '.join(sorted(units))})")
    if len(ids) < 3:
        raise ValidationDataError(f"{chosen}: {len(ids)} usable pair(s); at least 3 are needed")
    return MeasurementCases(
        chosen,
        units.pop() if units else "",
        ids,
        patients,
        np.asarray(measured),
        np.asarray(reference),
        attributes,
        excluded,
    )


def _mean_ci(d: Floats) -> Estimate:
    n = len(d)
    mean = float(d.mean())
    if n < 2:
        return Estimate(mean, math.nan, math.nan, "t interval", n)
    half = float(sps.t.ppf(0.975, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, "t interval", n)


def _proportional_bias(measured: Floats, reference: Floats) -> dict[str, Any]:
    """Slope of the differences on the pair means (Bland-Altman regression)."""
    d, mean = measured - reference, (measured + reference) / 2
    if np.ptp(mean) == 0:
        return Estimate(math.nan, math.nan, math.nan, "no spread in the values", len(d)).to_dict()
    fit = sps.linregress(mean, d)
    half = float(sps.t.ppf(0.975, len(d) - 2)) * float(fit.stderr)
    slope = float(fit.slope)
    method = "OLS of difference on mean"
    return Estimate(slope, slope - half, slope + half, method, len(d)).to_dict()


def _values(attribute: str, cells: list[str]) -> list[str]:
    if attribute.lower() in {"age", "patient_age", "patientage"}:
        return [age_band(c) if c else "(unknown)" for c in cells]
    return [c or "(unknown)" for c in cells]


def _subgroups(cases: MeasurementCases, width: float) -> dict[str, Any]:
    d = cases.measured - cases.reference
    out: dict[str, Any] = {"attributes": {}, "skipped": {}, "max_ci_width": width}
    tests: list[tuple[str, str]] = []
    for name in sorted(cases.attributes):
        values = np.asarray(_values(name, cases.attributes[name]))
        distinct = sorted(set(values.tolist()))
        if not 2 <= len(distinct) <= _MAX_GROUPS:
            out["skipped"][name] = f"{len(distinct)} distinct value(s)"
            continue
        groups: dict[str, Any] = {}
        for value in distinct:
            member = values == value
            inside, rest = d[member], d[~member]
            bias = _mean_ci(inside)
            p = (
                float(sps.ttest_ind(inside, rest, equal_var=False).pvalue)
                if len(inside) >= 2 and len(rest) >= 2
                else 1.0
            )
            groups[value] = {
                "n": int(member.sum()),
                "bias": bias.to_dict(),
                "mae": float(np.abs(inside).mean()),
                "judgeable": bool(len(inside) >= _MIN_GROUP and bias.high - bias.low <= width),
                "p": p if math.isfinite(p) else 1.0,
            }
            tests.append((name, value))
        out["attributes"][name] = {"groups": groups}
    adjusted = holm([out["attributes"][a]["groups"][v]["p"] for a, v in tests])
    for (a, v), p in zip(tests, adjusted, strict=True):
        entry = out["attributes"][a]["groups"][v]
        entry["p_holm"] = p
        entry["differs"] = bool(p < 0.05)
    out["comparisons"] = len(tests)
    return out


def evaluate_measurement(
    cases: MeasurementCases,
    *,
    tolerance: float | None = None,
    bootstrap: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Every agreement number of the module docstring, JSON-ready.

    Raises
    ------
    ValidationDataError
        If fewer than 3 pairs are given.
    """
    if len(cases) < 3:
        raise ValidationDataError("at least 3 pairs are needed")
    m, r = cases.measured, cases.reference
    d = m - r
    absolute = np.abs(d)
    ones = np.ones_like(d)

    def root(sums: Floats) -> Floats:
        with np.errstate(invalid="ignore", divide="ignore"):
            out: Floats = np.sqrt(sums[:, 0] / sums[:, 1])
        return out

    boot = intervals(
        {
            "mae": (float(absolute.mean()), Linear(np.stack([absolute, ones], 1), _mean)),
            "rmse": (float(np.sqrt((d**2).mean())), Linear(np.stack([d**2, ones], 1), root)),
        },
        cases.patient_index,
        bootstrap,
        seed,
    )
    agreement = bland_altman(m, r)
    result: dict[str, Any] = {
        "measurement": cases.name,
        "unit": cases.unit,
        "n": len(cases),
        "patients": int(cases.patient_index.max()) + 1,
        "bland_altman": agreement,
        "proportional_bias": _proportional_bias(m, r),
        "mae": boot["mae"].to_dict(),
        "rmse": boot["rmse"].to_dict(),
        "icc": icc_2_1(np.stack([m, r], 1)).to_dict(),
        "reference_range": [float(r.min()), float(r.max())],
        "tolerance": tolerance,
        "within_tolerance": None,
    }
    if tolerance is not None:
        result["within_tolerance"] = wilson(int((absolute <= tolerance).sum()), len(d)).to_dict()
    width = (
        tolerance
        if tolerance is not None
        else agreement["upper_limit"]["value"] - agreement["lower_limit"]["value"]
    )
    result["subgroups"] = _subgroups(cases, width)
    return result


def _mean(sums: Floats) -> Floats:
    with np.errstate(invalid="ignore", divide="ignore"):
        out: Floats = sums[:, 0] / sums[:, 1]
    return out
