"""The worklist: which studies to read first, with the AI results a radiologist may see.

One row per study that has at least one *visible* AI result or that is complete and waiting
for AI. Rows are ordered, in SQL (so ``limit``/``offset`` page through the same order):

1. studies with a visible result that is critical (positive for a critical finding at its
   operating point) first, then studies with a positive result, then studies with any
   visible result, then studies without one (:class:`PriorityTier`);
2. then by the highest visible score, descending (studies without a score last);
3. then by waiting time, oldest first (``studies.last_received_at``);
4. then by study id, so that the order is total and pages never overlap.

Results with ``visible`` false (shadow models) never appear here and never influence the
order; jobs of shadow models never influence the AI status.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Row, case, func, select
from sqlalchemy.orm import Session

from radpilot.pipeline.worklist_query import (
    AiStatus,
    PriorityTier,
    WorklistFilter,
    base_query,
    filtered_query,
    shown_job,
)
from radpilot.pipeline.worklist_rows import (
    FeedbackRow,
    ResultRow,
    SeriesRow,
    StudyNotFoundError,
    as_utc,
    decisions_of,
    results_of,
    series_of,
    series_rows,
)
from radpilot.store.models import Patient, Study, utcnow

__all__ = [
    "AiStatus",
    "FeedbackRow",
    "PriorityTier",
    "ResultRow",
    "SeriesRow",
    "StudyDetail",
    "StudyNotFoundError",
    "WorklistFilter",
    "WorklistPage",
    "WorklistRow",
    "find_study",
    "query_worklist",
    "shown_job",
    "study_detail",
]


@dataclass(frozen=True)
class WorklistRow:
    """One study on the worklist. ``patient_id`` is the identifier as stored (the
    pseudonym where intake de-identifies)."""

    study_id: int
    study_instance_uid: str
    accession_number: str | None
    patient_id: str
    patient_name: str | None  # DICOM PN as stored; pages show it only when settings say
    age: str | None  # DICOM AS, e.g. "045Y"
    age_years: float | None
    sex: str | None
    modalities: tuple[str, ...]
    body_parts: tuple[str, ...]
    study_description: str | None
    received_at: dt.datetime  # the last instance's arrival
    completed_at: dt.datetime | None
    waiting_seconds: float
    ai_status: AiStatus
    priority: PriorityTier
    critical: bool
    max_score: float | None
    results: tuple[ResultRow, ...]
    decision: FeedbackRow | None  # the latest decision on the study


@dataclass(frozen=True)
class WorklistPage:
    """One page of the worklist and the number of rows on all pages."""

    total: int
    offset: int
    limit: int
    generated_at: dt.datetime
    rows: list[WorklistRow] = field(default_factory=list)


def query_worklist(
    session: Session, flt: WorklistFilter | None = None, now: dt.datetime | None = None
) -> WorklistPage:
    """One page of the worklist, in priority order (see the module docstring).

    Parameters
    ----------
    session
        An open session; only read from.
    flt
        Filters, limit and offset; the whole first page of 100 by default.
    now
        The time waiting is measured to (default: now, UTC).
    """
    flt = flt or WorklistFilter()
    now = as_utc(now) if now is not None else utcnow()
    stmt = filtered_query(flt)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    cols = stmt.selected_columns
    ordered = stmt.order_by(
        cols.tier.desc(),
        case((cols.max_score.is_(None), 1), else_=0),
        cols.max_score.desc(),
        Study.last_received_at.asc(),
        Study.id.asc(),
    )
    page = session.execute(ordered.limit(flt.limit).offset(flt.offset)).all()
    rows = _rows(session, page, now)
    return WorklistPage(
        total=total, offset=flt.offset, limit=flt.limit, generated_at=now, rows=rows
    )


def find_study(session: Session, key: int | str) -> Study:
    """The study named by its numeric id or its Study Instance UID.

    Raises
    ------
    StudyNotFoundError
        If no study has that id or UID.
    """
    text = str(key).strip()
    where = Study.id == int(text) if text.isdigit() else Study.study_instance_uid == text
    study = session.scalars(select(Study).where(where)).first()
    if study is None:
        raise StudyNotFoundError(
            "no study with that id or Study Instance UID; GET /api/worklist lists the studies"
        )
    return study


@dataclass(frozen=True)
class StudyDetail:
    """One study: its worklist row (results with their files), series and decisions."""

    row: WorklistRow
    series: tuple[SeriesRow, ...]
    feedback: tuple[FeedbackRow, ...]  # newest first


def study_detail(session: Session, key: int | str, now: dt.datetime | None = None) -> StudyDetail:
    """Everything the API shows about one study, whether or not the worklist lists it.

    Raises
    ------
    StudyNotFoundError
        If no study has that id or UID.
    """
    study = find_study(session, key)
    stmt, _member = base_query()
    found = session.execute(stmt.where(Study.id == study.id)).one()
    now = as_utc(now) if now is not None else utcnow()
    row = _rows(session, [found], now, with_objects=True)[0]
    return StudyDetail(
        row=row,
        series=tuple(series_rows(session, study.id)),
        feedback=tuple(decisions_of(session, [study.id]).get(study.id, [])),
    )


_Page = Sequence[Row[Study, Patient, int, float | None, str]]


def _rows(
    session: Session, page: _Page, now: dt.datetime, with_objects: bool = False
) -> list[WorklistRow]:
    ids = [study.id for study, *_ in page]
    results = results_of(session, ids, with_objects=with_objects)
    decisions = decisions_of(session, ids)
    series = series_of(session, ids)
    rows = []
    for study, patient, tier, max_score, ai in page:
        received = as_utc(study.last_received_at)
        modalities, body_parts = series.get(study.id, ((), ()))
        history = decisions.get(study.id, [])
        rows.append(
            WorklistRow(
                study_id=study.id,
                study_instance_uid=study.study_instance_uid,
                accession_number=study.accession_number,
                patient_id=patient.patient_id,
                patient_name=patient.patient_name,
                age=study.patient_age,
                age_years=study.patient_age_years,
                sex=patient.sex,
                modalities=modalities,
                body_parts=body_parts,
                study_description=study.study_description,
                received_at=received,
                completed_at=as_utc(study.completed_at) if study.completed_at else None,
                waiting_seconds=max(0.0, (now - received).total_seconds()),
                ai_status=AiStatus(ai),
                priority=PriorityTier(tier),
                critical=tier == PriorityTier.CRITICAL,
                max_score=None if max_score is None else float(max_score),
                results=tuple(results.get(study.id, [])),
                decision=history[0] if history else None,
            )
        )
    return rows
