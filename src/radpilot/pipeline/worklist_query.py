"""The worklist's SQL: per-study aggregates of visible results and shown jobs, the
priority tier, the AI status, the membership condition and the filters.

:mod:`radpilot.pipeline.worklist` orders, pages and types what this selects.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, or_, select

from radpilot.store.models import Patient, Series, Study
from radpilot.store.models_pipeline import (
    Feedback,
    Job,
    JobStatus,
    ModelState,
    ModelVersion,
    Result,
)

__all__ = [
    "MAX_LIMIT",
    "AiStatus",
    "PriorityTier",
    "WorklistFilter",
    "base_query",
    "filtered_query",
    "shown_job",
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


def base_query() -> tuple[Select[Study, Patient, int, float | None, str], ColumnElement[bool]]:
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


def filtered_query(flt: WorklistFilter) -> Select[Study, Patient, int, float | None, str]:
    stmt, member = base_query()
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
