"""Finding the study each label row names, by UID, accession number or patient pseudonym."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from radpilot.data.labels_csv import IDENTIFIERS, ParsedRow
from radpilot.store.models import Patient, Study

__all__ = ["RowIssue", "chunks", "match_rows"]

_T = TypeVar("_T", str, int)
_CHUNK = 500  # values per IN (...) query; well under SQLite's variable limit


@dataclass(frozen=True, slots=True)
class RowIssue:
    """A row that was not imported: ``invalid``, ``unmatched``, ``ambiguous`` or ``conflict``."""

    row: int
    kind: str
    reason: str


def chunks(values: Iterable[_T]) -> Iterable[list[_T]]:
    """Distinct ``values``, sorted, in lists short enough for one ``IN (...)``."""
    items = sorted(set(values))
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


@dataclass(frozen=True, slots=True)
class _Study:
    pk: int
    values: dict[str, str | None]  # identifier column -> the study's value


def _lookup(session: Session, rows: list[ParsedRow], key: str) -> dict[str, list[_Study]]:
    column: InstrumentedAttribute[Any] = {
        "study_instance_uid": Study.study_instance_uid,
        "accession_number": Study.accession_number,
        "patient_id": Patient.patient_id,
    }[key]
    found: dict[str, list[_Study]] = {}
    wanted = (row.identifiers[key] for row in rows if key in row.identifiers)
    for chunk in chunks(wanted):
        stmt = (
            select(
                Study.id,
                Study.study_instance_uid,
                Study.accession_number,
                Patient.patient_id,
                Study.study_date,
            )
            .join(Patient, Study.patient_pk == Patient.id)
            .where(column.in_(chunk))
        )
        for pk, uid, accession, patient_id, study_date in session.execute(stmt):
            values = {
                "study_instance_uid": uid,
                "accession_number": accession,
                "patient_id": patient_id,
                "study_date": study_date,
            }
            found.setdefault(values[key] or "", []).append(_Study(pk, values))
    return found


def _studies(count: int) -> str:
    return "1 study" if count == 1 else f"{count} studies"


def match_rows(
    session: Session, rows: list[ParsedRow], issues: list[RowIssue]
) -> list[tuple[ParsedRow, int]]:
    """Pair each row with the primary key of its study; add an issue for every other row.

    A row's study is found by its first identifier (study_instance_uid, accession_number,
    patient_id); its other identifiers and its study_date must agree with that study
    where the study knows them, and pick one study when several match the first. No
    match is ``unmatched``, several are ``ambiguous``.

    Raises
    ------
    sqlalchemy.exc.SQLAlchemyError
        If the database fails.
    """
    keys = IDENTIFIERS
    index = {key: _lookup(session, rows, key) for key in keys}
    matched: list[tuple[ParsedRow, int]] = []
    for row in rows:
        key = next(k for k in keys if k in row.identifiers)
        candidates = index[key].get(row.identifiers[key], [])
        checks = {k: v for k, v in row.identifiers.items() if k != key}
        if row.study_date is not None:
            checks["study_date"] = row.study_date
        agreeing = [
            s for s in candidates if all(s.values[k] in (None, v) for k, v in checks.items())
        ]
        if len(agreeing) > 1:  # prefer the studies that know and match every value
            exact = [s for s in agreeing if all(s.values[k] == v for k, v in checks.items())]
            agreeing = exact if len(exact) == 1 else agreeing
        if not candidates:
            issues.append(RowIssue(row.row, "unmatched", f"no indexed study has this {key}"))
        elif not agreeing:
            issues.append(
                RowIssue(
                    row.row,
                    "invalid",
                    f"{key} finds {_studies(len(candidates))}, but none with this "
                    f"{' and '.join(sorted(checks))}",
                )
            )
        elif len(agreeing) > 1:
            hint = "add study_date or " if key == "patient_id" else "add "
            issues.append(
                RowIssue(
                    row.row,
                    "ambiguous",
                    f"{key} matches {_studies(len(agreeing))}; {hint}study_instance_uid",
                )
            )
        else:
            matched.append((row, agreeing[0].pk))
    return matched
