"""The typed pieces of a worklist row (results, decisions, series), loaded per page.

Each loader takes the study ids of one page and answers with one query, so a page of any
size costs a fixed number of round trips.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from radpilot.core.errors import RadpilotError
from radpilot.store.models import Instance, Series, as_utc
from radpilot.store.models_pipeline import Decision, Feedback, ModelVersion, Result, ResultObject

__all__ = [
    "FeedbackRow",
    "ObjectRow",
    "ResultRow",
    "SeriesRow",
    "StudyNotFoundError",
    "as_utc",
    "decisions_of",
    "feedback_row",
    "objects_of",
    "results_of",
    "series_of",
    "series_rows",
]


class StudyNotFoundError(RadpilotError):
    """No study has the id or Study Instance UID asked for."""


@dataclass(frozen=True)
class ObjectRow:
    """A file made from a result (SR, SEG, report...), without its path on disk."""

    id: int
    kind: str
    name: str
    media_type: str
    sop_instance_uid: str | None
    created_at: dt.datetime


@dataclass(frozen=True)
class ResultRow:
    """One visible AI result: who said it (model name and version) and what."""

    id: int
    model_name: str
    model_version: str
    finding: str | None
    score: float | None
    threshold: float | None
    operating_point: str | None
    above_operating_point: bool  # ``results.positive``: positive at its operating point
    critical: bool  # positive for a finding the model lists as critical
    stored_at: dt.datetime
    details: dict[str, Any]
    objects: tuple[ObjectRow, ...] = ()


@dataclass(frozen=True)
class FeedbackRow:
    """One stored decision of a reader on a result."""

    id: int
    study_id: int
    result_id: int | None
    decision: Decision
    reason_code: str | None
    free_text: str | None
    corrected_label: str | None
    corrected_measurement: dict[str, Any] | None
    reader: str
    opened_at: dt.datetime | None
    decided_at: dt.datetime


@dataclass(frozen=True)
class SeriesRow:
    """One series of a study, as the study detail shows it."""

    series_instance_uid: str
    series_number: int | None
    modality: str | None
    body_part: str | None
    series_description: str | None
    instances: int


def results_of(
    session: Session, study_ids: list[int], with_objects: bool = False
) -> dict[int, list[ResultRow]]:
    """Visible results per study, most urgent first (critical, positive, score)."""
    if not study_ids:
        return {}
    rows = session.execute(
        select(Result, ModelVersion.name, ModelVersion.version)
        .join(ModelVersion, Result.model_version_pk == ModelVersion.id)
        .where(Result.study_pk.in_(study_ids), Result.visible.is_(True))
    ).all()
    objects = objects_of(session, [r[0].id for r in rows]) if with_objects else {}
    out: dict[int, list[ResultRow]] = defaultdict(list)
    for result, name, version in rows:
        out[result.study_pk].append(
            ResultRow(
                id=result.id,
                model_name=name,
                model_version=version,
                finding=result.finding,
                score=result.score,
                threshold=result.threshold,
                operating_point=result.operating_point,
                above_operating_point=bool(result.positive),
                critical=bool(result.critical and result.positive),
                stored_at=as_utc(result.stored_at),
                details=dict(result.details or {}),
                objects=tuple(objects.get(result.id, [])),
            )
        )
    for results in out.values():
        results.sort(
            key=lambda r: (
                not r.critical,
                not r.above_operating_point,
                -(r.score if r.score is not None else float("-inf")),
                r.id,
            )
        )
    return out


def objects_of(session: Session, result_ids: list[int]) -> dict[int, list[ObjectRow]]:
    """The files made from each result, by kind and name."""
    if not result_ids:
        return {}
    out: dict[int, list[ObjectRow]] = defaultdict(list)
    for obj in session.scalars(
        select(ResultObject)
        .where(ResultObject.result_pk.in_(result_ids))
        .order_by(ResultObject.kind, ResultObject.name)
    ):
        out[obj.result_pk].append(
            ObjectRow(
                id=obj.id,
                kind=obj.kind,
                name=obj.name,
                media_type=obj.media_type,
                sop_instance_uid=obj.sop_instance_uid,
                created_at=as_utc(obj.created_at),
            )
        )
    return out


def feedback_row(fb: Feedback) -> FeedbackRow:
    """The typed, time-normalised view of one feedback row."""
    return FeedbackRow(
        id=fb.id,
        study_id=fb.study_pk,
        result_id=fb.result_pk,
        decision=Decision(fb.decision),
        reason_code=fb.reason_code,
        free_text=fb.free_text,
        corrected_label=fb.corrected_label,
        corrected_measurement=fb.corrected_measurement,
        reader=fb.reader,
        opened_at=as_utc(fb.opened_at) if fb.opened_at else None,
        decided_at=as_utc(fb.decided_at),
    )


def decisions_of(session: Session, study_ids: list[int]) -> dict[int, list[FeedbackRow]]:
    """Every decision per study, newest first."""
    if not study_ids:
        return {}
    out: dict[int, list[FeedbackRow]] = defaultdict(list)
    for fb in session.scalars(
        select(Feedback)
        .where(Feedback.study_pk.in_(study_ids))
        .order_by(Feedback.decided_at.desc(), Feedback.id.desc())
    ):
        out[fb.study_pk].append(feedback_row(fb))
    return out


def series_of(
    session: Session, study_ids: list[int]
) -> dict[int, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Distinct modalities and body parts per study, sorted."""
    if not study_ids:
        return {}
    modalities: dict[int, set[str]] = defaultdict(set)
    parts: dict[int, set[str]] = defaultdict(set)
    for study_pk, modality, part in session.execute(
        select(Series.study_pk, Series.modality, Series.body_part_examined)
        .where(Series.study_pk.in_(study_ids))
        .distinct()
    ):
        if modality:
            modalities[study_pk].add(modality)
        if part:
            parts[study_pk].add(part)
    return {
        pk: (tuple(sorted(modalities[pk])), tuple(sorted(parts[pk])))
        for pk in set(modalities) | set(parts)
    }


def series_rows(session: Session, study_id: int) -> list[SeriesRow]:
    """The series of one study with their instance counts, by series number."""
    rows = session.execute(
        select(Series, func.count(Instance.id))
        .outerjoin(Instance, Instance.series_pk == Series.id)
        .where(Series.study_pk == study_id)
        .group_by(Series.id)
        .order_by(Series.series_number, Series.id)
    ).all()
    return [
        SeriesRow(
            series_instance_uid=s.series_instance_uid,
            series_number=s.series_number,
            modality=s.modality,
            body_part=s.body_part_examined,
            series_description=s.series_description,
            instances=int(n),
        )
        for s, n in rows
    ]
