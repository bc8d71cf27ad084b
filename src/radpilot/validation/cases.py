"""The table validation works on: one row per case with a score and a reference label.

Nothing is dropped silently. A row without a usable score or label, or a second row for
a case already seen, is set aside as an :class:`Exclusion` naming the case and the
reason, and the report states how many were excluded and why. Cases without a patient
identifier count as their own patient.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt

from radpilot.core.errors import RadpilotError

__all__ = ["CaseTable", "Exclusion", "ValidationDataError", "build_cases"]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


class ValidationDataError(RadpilotError):
    """The cases cannot be validated (no cases, or one class only)."""


@dataclass(frozen=True)
class Exclusion:
    """A case left out, and why."""

    case_id: str
    reason: str


@dataclass
class CaseTable:
    """Cases kept for validation, as arrays in one order, and those set aside."""

    case_ids: list[str]
    patient_ids: list[str]
    scores: Floats
    labels: Ints
    attributes: dict[str, list[str]] = field(default_factory=dict)
    excluded: list[Exclusion] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.case_ids)

    @cached_property
    def patient_index(self) -> Ints:
        """Each case's patient as ``0 .. patients - 1``."""
        _, index = np.unique(np.asarray(self.patient_ids, dtype=object), return_inverse=True)
        return np.asarray(index, dtype=np.int64).reshape(-1)

    @cached_property
    def clustered(self) -> bool:
        """Whether some patient has several cases (then CIs resample patients)."""
        return len(set(self.patient_ids)) < len(self.patient_ids)

    def exclusion_summary(self) -> dict[str, int]:
        """Excluded cases counted by reason."""
        return dict(Counter(e.reason for e in self.excluded))

    def subset(self, mask: npt.NDArray[np.bool_]) -> CaseTable:
        """The cases where ``mask`` holds (exclusions stay with the whole table)."""
        table = self.take(np.nonzero(mask)[0])
        table.excluded = []
        return table

    def take(self, index: Ints) -> CaseTable:
        """The cases at ``index``, in that order; the exclusions are kept."""
        table = CaseTable(
            [self.case_ids[i] for i in index],
            [self.patient_ids[i] for i in index],
            self.scores[index],
            self.labels[index],
            {k: [v[i] for i in index] for k, v in self.attributes.items()},
        )
        table.excluded = list(self.excluded)
        return table


def _score(value: object) -> tuple[float | None, str | None]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, "missing score"
    try:
        score = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None, f"score is not a number ({str(value)[:20]!r})"
    if math.isnan(score):
        return None, "score is NaN"
    if math.isinf(score):
        return None, "score is infinite"
    return score, None


def _label(value: object, positive: set[str]) -> tuple[int | None, str | None]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, "no reference label"
    text = str(value).strip().lower()
    if text in {"0", "0.0", "false", "no", "absent", "negative", "normal"}:
        return 0, None
    if text in {"1", "1.0", "true", "yes", "present", "positive"} or text in positive:
        return 1, None
    return None, f"label not understood ({str(value)[:20]!r})"


def build_cases(
    rows: Iterable[Mapping[str, object]],
    *,
    id_key: str = "case_id",
    score_key: str = "score",
    label_key: str = "label",
    patient_key: str = "patient_id",
    positive_labels: Iterable[str] = (),
    attribute_keys: Iterable[str] | None = None,
) -> CaseTable:
    """Cases from rows (e.g. a CSV's ``DictReader``); unusable rows are excluded with why.

    ``positive_labels`` are finding names that count as 1 (e.g. ``pneumonia``); other
    columns become attributes for subgroups (all of them, or ``attribute_keys``).

    Raises
    ------
    ValidationDataError
        If no case is left, or the cases kept hold one class only.
    """
    positive = {p.strip().lower() for p in positive_labels}
    fixed = {id_key, score_key, label_key, patient_key}
    keys = None if attribute_keys is None else list(attribute_keys)
    ids: list[str] = []
    patients: list[str] = []
    scores: list[float] = []
    labels: list[int] = []
    attributes: dict[str, list[str]] = {}
    excluded: list[Exclusion] = []
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        case_id = str(row.get(id_key) or "").strip() or f"row {number}"
        if case_id in seen:
            excluded.append(Exclusion(case_id, "duplicate case (first row kept)"))
            continue
        seen.add(case_id)
        score, why = _score(row.get(score_key))
        label, why_label = _label(row.get(label_key), positive)
        if score is None or label is None:
            excluded.append(Exclusion(case_id, why or why_label or "unusable"))
            continue
        if keys is None:
            keys = [k for k in row if k not in fixed]
        ids.append(case_id)
        patients.append(str(row.get(patient_key) or "").strip() or f"case:{case_id}")
        scores.append(score)
        labels.append(label)
        for key in keys:
            value = row.get(key)
            attributes.setdefault(key, []).append("" if value is None else str(value))
    if not ids:
        raise ValidationDataError(f"no usable case ({len(excluded)} excluded)")
    table = CaseTable(
        ids, patients, np.asarray(scores), np.asarray(labels, dtype=np.int64), attributes
    )
    table.excluded = excluded
    classes = set(labels)
    if len(classes) < 2:
        only = "positive" if 1 in classes else "negative"
        raise ValidationDataError(
            f"all {len(ids)} usable cases are {only}: sensitivity and specificity need both classes"
        )
    return table
