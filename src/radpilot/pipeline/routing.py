"""Routing rules: which models a complete study goes to, and with which series.

Rules are declarative YAML, matched against the index (no file is opened to route)::

    rules:
      - name: chest-radiograph-pneumonia
        match:                       # every pattern must match the series (full match,
          Modality: "CR|DX"          # case-insensitive regular expressions)
          BodyPartExamined: "CHEST"
          ViewPosition: "PA|AP|"     # an empty alternative accepts a missing value
        models: [pneumonia-cxr]      # a name (its shadow and active versions) or name:version
        series: largest              # all (default) | largest | first

A study goes to every model of every rule one of its series matches; several rules may
name the same model (their series are merged). A malformed file is refused at load with
the line and field at fault.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from radpilot.core.yamlfile import load_yaml_model, parse_yaml_model
from radpilot.store.models import Series, Study

__all__ = [
    "ATTRIBUTES",
    "Route",
    "Rule",
    "RuleSet",
    "SeriesSelection",
    "SeriesView",
    "load_rules",
    "parse_rules",
]

#: DICOM keyword -> where the index keeps it ("series" or "study", column name).
ATTRIBUTES: dict[str, tuple[str, str]] = {
    "Modality": ("series", "modality"),
    "BodyPartExamined": ("series", "body_part_examined"),
    "ViewPosition": ("series", "view_position"),
    "SeriesDescription": ("series", "series_description"),
    "ProtocolName": ("series", "protocol_name"),
    "Manufacturer": ("series", "manufacturer"),
    "ManufacturerModelName": ("series", "manufacturer_model_name"),
    "StationName": ("series", "station_name"),
    "ConvolutionKernel": ("series", "convolution_kernel"),
    "InstitutionName": ("series", "institution_name"),
    "StudyDescription": ("study", "study_description"),
}


class SeriesSelection(enum.StrEnum):
    """Which of the matching series the model gets."""

    ALL = "all"
    LARGEST = "largest"  # the one with most instances
    FIRST = "first"  # the lowest series number


class Rule(BaseModel):
    """One routing rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128)
    match: dict[str, str] = Field(default_factory=dict)
    models: list[str] = Field(min_length=1)
    series: SeriesSelection = SeriesSelection.ALL

    @field_validator("match")
    @classmethod
    def _known_and_compilable(cls, value: dict[str, str]) -> dict[str, str]:
        for keyword, pattern in value.items():
            if keyword not in ATTRIBUTES:
                raise ValueError(
                    f"cannot match on {keyword!r}; use one of {', '.join(sorted(ATTRIBUTES))}"
                )
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"{keyword}: {pattern!r} is not a regular expression ({exc})"
                ) from exc
        return value

    def matches(self, attributes: dict[str, str | None]) -> bool:
        """Whether every pattern fully matches (case-insensitive; missing = empty)."""
        return all(
            re.fullmatch(pattern, attributes.get(keyword) or "", re.IGNORECASE) is not None
            for keyword, pattern in self.match.items()
        )


class RuleSet(BaseModel):
    """The whole rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[Rule] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, value: list[Rule]) -> list[Rule]:
        names = [rule.name for rule in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(duplicates)}")
        return value

    @classmethod
    def empty(cls) -> Self:
        """No rules: nothing is routed."""
        return cls(rules=[])


@dataclass(frozen=True)
class SeriesView:
    """What routing needs to know of one series."""

    series_instance_uid: str
    series_number: int | None
    instances: int
    attributes: dict[str, str | None]

    @classmethod
    def of(cls, series: Series, study: Study, instances: int) -> SeriesView:
        """Build from index rows."""
        attributes: dict[str, str | None] = {}
        for keyword, (table, column) in ATTRIBUTES.items():
            row: Any = series if table == "series" else study
            attributes[keyword] = getattr(row, column)
        return cls(series.series_instance_uid, series.series_number, instances, attributes)


@dataclass(frozen=True)
class Route:
    """One model reference and the series of a study it should get."""

    model: str  # "name" or "name:version"
    series_uids: tuple[str, ...]
    rules: tuple[str, ...]


def _select(rule: Rule, matching: list[SeriesView]) -> list[SeriesView]:
    if rule.series is SeriesSelection.LARGEST:
        return [max(matching, key=lambda s: (s.instances, -(s.series_number or 0)))]
    if rule.series is SeriesSelection.FIRST:
        big = 1 << 31
        return [
            min(matching, key=lambda s: s.series_number if s.series_number is not None else big)
        ]
    return matching


def route(rules: RuleSet, series: Iterable[SeriesView]) -> list[Route]:
    """The routes for one study: one per model reference, series merged across rules."""
    views = list(series)
    merged: dict[str, tuple[list[str], list[str]]] = {}
    for rule in rules.rules:
        matching = [view for view in views if rule.matches(view.attributes)]
        if not matching:
            continue
        chosen = [view.series_instance_uid for view in _select(rule, matching)]
        for model in rule.models:
            uids, names = merged.setdefault(model, ([], []))
            uids.extend(uid for uid in chosen if uid not in uids)
            names.append(rule.name)
    return [Route(model, tuple(uids), tuple(names)) for model, (uids, names) in merged.items()]


def parse_rules(text: str, source: str = "routing.yaml") -> RuleSet:
    """Parse rules YAML.

    Raises
    ------
    ManifestError
        With ``source:line: field: problem`` when the file is invalid.
    """
    return parse_yaml_model(text, RuleSet, source)


def load_rules(path: Path) -> RuleSet:
    """Load the rules file; a missing file means no rules.

    Raises
    ------
    ManifestError
        If the file exists but is unreadable or invalid.
    """
    if not path.exists():
        return RuleSet.empty()
    return load_yaml_model(path, RuleSet)


def model_names(rules: RuleSet) -> Sequence[str]:
    """Every model reference the rules name, in order of first mention."""
    seen: list[str] = []
    for rule in rules.rules:
        seen.extend(m for m in rule.models if m not in seen)
    return seen
