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
import enum
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session

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
from radpilot.store.models import Patient, Series, Study, utcnow
from radpilot.store.models_pipeline import Feedback, Job, JobStatus, ModelState, ModelVersion, Result

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

MAX_LIMIT = 1000


class AiStatus(enum.StrEnum):
    """Where the AI stands for a study, from its (non-shadow) jobs; first match wins."""

    RUNNING = "running"  # a job is running
    PENDING = "pending"  # a job is queued (first try or waiting to retry)
    FAILED = "failed"  # a job failed for good and none is left to run
    DONE = "done"  # every job finished
    NONE = "none"  # no job (no routing rule matched, or routing has not run yet)


class PriorityTier(enum.IntEnum):
    """The first sort key of the worklist; higher is read first."""

    NO_RESULT = 0
    RESULT = 1
    POSITIVE = 2
    CRITICAL = 3


@dataclass(frozen=True)
class WorklistFilter:
    """What to show: every field is optional; ``text`` searches description and accession.

    Raises
    ------
    ValueError
        If ``limit`` is outside 1..1000 or ``offset`` is negative.
    """

    modality: str | None = None
    finding: str | None = None
    ai_status: AiStatus | None = None
    decided: bool | None = None
    text: str | None = None
    limit: int = 100
    offset: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, not {self.limit}")
        if self.offset < 0:
            raise ValueError(f"offset must be 0 or more, not {self.offset}")


@dataclass(frozen=True)
class WorklistRow:
    """One study on the worklist. ``patient_id`` is the identifier as stored (the
    pseudonym where intake de-identifies)."""

    study_id: int
    study_instance_uid: str
    accession_number: str | None
    patient_id: str
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


def shown_job() -> ColumnElement[bool]:
    """Jobs whose outcome a radiologist may see: the job's result is visible, or it has no
    result yet and its model version is not in shadow.

    Use with ``Job`` joined to ``ModelVersion`` and outer-joined to ``Result``.
    """
    return or_(
        Result.visible.is_(True),
        and_(Result.id.is_(None), ModelVersion.state != ModelState.SHADOW),
    )


def _summaries() -> tuple[
    Select[int, int, int, float | None, int], Select[int, int, int, int, int]
]:
    crit = case((and_(Result.critical.is_(True), Result.positive.is_(True)), 1), else_=0)
    pos = case((Result.positive.is_(True), 1), else_=0)
    results = (
        select(
            Result.study_pk.label("study_pk"),
            func.max(crit).label("critical"),
            func.max(pos).label("positive"),
            func.max(Result.score).label("max_score"),
            func.count(Result.id).label("n"),
        )
        .where(Result.visible.is_(True))
        .group_by(Result.study_pk)
    )

    def count(status: JobStatus) -> ColumnElement[int]:
        return func.sum(case((Job.status == status, 1), else_=0))

    jobs = (
        select(
            Job.study_pk.label("study_pk"),
            count(JobStatus.RUNNING).label("running"),
            count(JobStatus.QUEUED).label("queued"),
            count(JobStatus.FAILED).label("failed"),
            count(JobStatus.DONE).label("done"),
        )
        .join(ModelVersion, Job.model_version_pk == ModelVersion.id)
        .outerjoin(Result, Result.job_pk == Job.id)
        .where(shown_job())
        .group_by(Job.study_pk)
    )
    return results, jobs


def _base() -> tuple[Select[Study, Patient, int, float | None, str], ColumnElement[bool]]:
    """Studies with their tier, top score and AI status, plus the worklist's membership
    condition (not applied, so that one study's detail can use the same columns)."""
    results_q, jobs_q = _summaries()
    res = results_q.subquery("visible_results")
    jobs = jobs_q.subquery("shown_jobs")
    tier = case(
        (res.c.critical == 1, int(PriorityTier.CRITICAL)),
        (res.c.positive == 1, int(PriorityTier.POSITIVE)),
        (res.c.n > 0, int(PriorityTier.RESULT)),
        else_=int(PriorityTier.NO_RESULT),
    ).label("tier")
    ai = case(
        (func.coalesce(jobs.c.running, 0) > 0, AiStatus.RUNNING.value),
        (func.coalesce(jobs.c.queued, 0) > 0, AiStatus.PENDING.value),
        (func.coalesce(jobs.c.failed, 0) > 0, AiStatus.FAILED.value),
        (func.coalesce(jobs.c.done, 0) > 0, AiStatus.DONE.value),
        else_=AiStatus.NONE.value,
    ).label("ai_status")
    stmt = (
        select(Study, Patient, tier, res.c.max_score, ai)
        .join(Patient, Study.patient_pk == Patient.id)
        .outerjoin(res, res.c.study_pk == Study.id)
        .outerjoin(jobs, jobs.c.study_pk == Study.id)
    )
    member = or_(res.c.study_pk.is_not(None), Study.completed_at.is_not(None))
    return stmt, member


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filtered(flt: WorklistFilter) -> Select[Study, Patient, int, float | None, str]:
    stmt, member = _base()
    stmt = stmt.where(member)
    if flt.modality:
        stmt = stmt.where(
            exists().where(
                Series.study_pk == Study.id,
                func.upper(Series.modality) == flt.modality.strip().upper(),
            )
        )
    if flt.finding:
        stmt = stmt.where(
            exists().where(
                Result.study_pk == Study.id,
                Result.visible.is_(True),
                func.lower(Result.finding) == flt.finding.strip().lower(),
            )
        )
    if flt.decided is not None:
        decided = exists().where(Feedback.study_pk == Study.id)
        stmt = stmt.where(decided if flt.decided else ~decided)
    if flt.text and flt.text.strip():
        pattern = _like(flt.text.strip())
        stmt = stmt.where(
            or_(
                Study.study_description.ilike(pattern, escape="\\"),
                Study.accession_number.ilike(pattern, escape="\\"),
            )
        )
    if flt.ai_status is not None:
        ai = stmt.selected_columns.ai_status
        stmt = stmt.where(ai == AiStatus(flt.ai_status).value)
    return stmt


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
    stmt = _filtered(flt)
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
    rows = _rows(session, [r.tuple() for r in page], now)
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
    stmt, _member = _base()
    found = session.execute(stmt.where(Study.id == study.id)).one()
    now = as_utc(now) if now is not None else utcnow()
    row = _rows(session, [found.tuple()], now, with_objects=True)[0]
    return StudyDetail(
        row=row,
        series=tuple(series_rows(session, study.id)),
        feedback=tuple(decisions_of(session, [study.id]).get(study.id, [])),
    )


_Page = list[tuple[Study, Patient, int, float | None, str]]


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
