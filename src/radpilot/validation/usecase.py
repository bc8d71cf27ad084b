"""The use case: the narrow clinical question, with its success thresholds declared before
any testing, and the verdict of a validation against them.

A criterion is **met** when the whole 95% CI clears its threshold (the evidence shows
it), **not demonstrated** when the estimate clears it but the CI does not, and **not
met** when the estimate itself falls short. Criteria on things a validation set does not
measure (latency) are **not evaluated here**. The verdict is ``pass`` only when every
evaluated criterion is met and none is missing.

```yaml
schema: radpilot.usecase/1
name: pneumonia-triage
finding: pneumonia
modalities: [CR, DX]
body_part: CHEST
population: children 1-5 years, frontal chest radiographs
case_noun: chest radiographs
intended_use: triage of the reading worklist
prevalence: 0.05
success:
  - {metric: auc, min: 0.95}
  - {metric: sensitivity, min: 0.90, operating_point: youden}
  - {metric: specificity, min: 0.80, operating_point: youden}
  - {metric: latency_p95_seconds, max: 1.0}
```
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from radpilot.core.yamlfile import load_yaml_model

__all__ = [
    "DETECTION_METRICS",
    "MEASUREMENT_METRICS",
    "SEGMENTATION_METRICS",
    "Criterion",
    "UseCase",
    "judge",
    "judge_all",
    "load_use_case",
    "verdict",
]

Metric = Literal[
    "auc", "sensitivity", "specificity", "ppv", "npv", "accuracy", "f1", "latency_p95_seconds",
    # measurement models (radpilot.validation.measurement), in the measurement's unit
    "mae", "rmse", "abs_bias", "limits_of_agreement", "icc", "within_tolerance",
    # segmentation models (radpilot.validation.segmentation): means over cases
    "dice", "hd95_mm", "surface_dice",
    # detection models (radpilot.validation.detection): FROC sensitivity at a false-positive rate
    "sensitivity_at_half_fp", "sensitivity_at_1_fp", "sensitivity_at_2_fp",
]  # fmt: skip
MEASUREMENT_METRICS = {"mae", "rmse", "abs_bias", "limits_of_agreement", "icc", "within_tolerance"}
SEGMENTATION_METRICS = {"dice", "hd95_mm", "surface_dice"}
DETECTION_METRICS = {"sensitivity_at_half_fp", "sensitivity_at_1_fp", "sensitivity_at_2_fp"}
_AT_POINT = {"sensitivity", "specificity", "ppv", "npv", "accuracy", "f1"}


class Criterion(BaseModel):
    """One success threshold: ``metric >= min`` or ``metric <= max``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: Metric
    min: float | None = None
    max: float | None = None
    operating_point: str | None = None  # for metrics at a threshold; default: the package's
    at_prevalence: bool = False  # ppv / npv at the use case's prevalence

    @model_validator(mode="after")
    def _one_bound(self) -> Self:
        if (self.min is None) == (self.max is None):
            raise ValueError("give exactly one of min and max")
        if self.operating_point is not None and self.metric not in _AT_POINT:
            raise ValueError(f"operating_point: {self.metric} is not measured at a threshold")
        if self.at_prevalence and self.metric not in {"ppv", "npv"}:
            raise ValueError("at_prevalence: only for ppv and npv")
        return self

    def describe(self) -> str:
        """``sensitivity >= 0.9 at youden``."""
        bound = f">= {self.min:g}" if self.min is not None else f"<= {self.max:g}"
        where = f" at {self.operating_point}" if self.operating_point else ""
        return f"{self.metric}{' at prevalence' if self.at_prevalence else ''} {bound}{where}"


class UseCase(BaseModel):
    """A deployment's clinical question and what success means, declared up front."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["radpilot.usecase/1"] = Field("radpilot.usecase/1", alias="schema")
    name: str = Field(min_length=1, max_length=128)
    finding: str = Field(min_length=1)
    modalities: list[str] = Field(default_factory=list)
    body_part: str | None = None
    population: str = ""
    intended_use: str = ""
    case_noun: str = "studies"  # how the summary names the cases: "chest radiographs"
    prevalence: float | None = Field(None, gt=0.0, lt=1.0)
    #: Measurement use cases: the largest clinically acceptable difference from the
    #: reference, in ``unit`` (the ``within_tolerance`` criterion and subgroup judgement).
    tolerance: float | None = Field(None, gt=0.0)
    unit: str | None = None
    success: list[Criterion] = Field(min_length=1)


def load_use_case(path: Path) -> UseCase:
    """Read and check a use case file.

    Raises
    ------
    radpilot.core.errors.ManifestError
        If the file is missing or malformed; the message names the line and key.
    """
    return load_yaml_model(path, UseCase)


def _value(
    binary: dict[str, Any], criterion: Criterion, default_point: str
) -> dict[str, Any] | None:
    found: dict[str, Any] | None
    if criterion.metric == "auc":
        found = binary.get("auc")
        return found
    name = criterion.operating_point or default_point
    point = binary["operating_points"].get(name) or binary["chosen_here"].get(name)
    if point is None:
        return None
    found = point.get("at_prevalence", {}) if criterion.at_prevalence else point
    assert found is not None
    estimate: dict[str, Any] | None = found.get(criterion.metric)
    return estimate


def judge_all(
    use_case: UseCase,
    kind: str,
    metrics: set[str],
    estimate_of: Callable[[Criterion], dict[str, Any] | str],
) -> dict[str, Any]:
    """Each criterion of ``use_case`` and the overall verdict, for a ``kind`` of model
    whose ``metrics`` ``estimate_of`` gives (an estimate, or why there is none)."""
    rows = []
    for criterion in use_case.success:
        row: dict[str, Any] = {"criterion": criterion.describe()}
        if criterion.metric == "latency_p95_seconds":
            row |= {"outcome": "not evaluated here", "why": "measured by `radpilot stats latency`"}
        elif criterion.metric not in metrics:
            row |= {"outcome": "missing", "why": f"not a {kind} metric"}
        else:
            found = estimate_of(criterion)
            row |= (
                {"outcome": "missing", "why": found}
                if isinstance(found, str)
                else judge(criterion, found)
            )
        rows.append(row)
    evaluated = [r for r in rows if r["outcome"] != "not evaluated here"]
    overall = "pass" if evaluated and all(r["outcome"] == "met" for r in evaluated) else "fail"
    return {"use_case": use_case.name, "criteria": rows, "verdict": overall}


def verdict(use_case: UseCase, binary: dict[str, Any], default_point: str) -> dict[str, Any]:
    """Each criterion's outcome on ``binary`` (:func:`~radpilot.validation.binary.evaluate_binary`)
    and the overall verdict."""

    def estimate_of(criterion: Criterion) -> dict[str, Any] | str:
        return _value(binary, criterion, default_point) or "not computed for these cases"

    metrics = set(get_args(Metric)) - MEASUREMENT_METRICS - SEGMENTATION_METRICS - DETECTION_METRICS
    return judge_all(use_case, "classification", metrics, estimate_of)


def judge(criterion: Criterion, estimate: dict[str, Any]) -> dict[str, Any]:
    """``met`` when the whole 95% CI clears the bound, ``not demonstrated`` when only the
    estimate does, ``not met`` otherwise; with the estimate and its CI."""
    value, low, high = estimate["value"], estimate["low"], estimate["high"]
    if criterion.min is not None:
        outcome = "met" if low >= criterion.min else (
            "not demonstrated" if value >= criterion.min else "not met")  # fmt: skip
    else:
        assert criterion.max is not None
        outcome = "met" if high <= criterion.max else (
            "not demonstrated" if value <= criterion.max else "not met")  # fmt: skip
    return {"outcome": outcome, "value": value, "low": low, "high": high}
