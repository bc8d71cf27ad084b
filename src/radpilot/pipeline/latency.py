"""How long each stage of the way from scanner to decision takes: p50 and p95.

The stamps live on the rows they belong to; one observation is one job of a model that a
radiologist may see (its result is visible, or it has no result and its model is not in
shadow), joined to its study, its result, the last delivery of any of the result's
objects and the first decision on the result::

    received   studies.last_received_at
    complete   studies.completed_at
    queued     jobs.queued_at
    inference  jobs.inference_started_at .. jobs.inference_ended_at
    stored     results.stored_at
    delivered  max(deliveries.delivered_at) over the result's objects
    opened     feedback.opened_at    (the result's first decision)
    decided    feedback.decided_at

A stage counts an observation only when both its stamps exist and the end is not before
the start (a study that received more images after its job was queued has a later
``last_received_at`` than ``queued_at``; such pairs are counted in ``out_of_order``).
The received → complete stage is counted once per study, not once per job.

Percentiles are linear interpolation between closest ranks (Hyndman & Fan type 7),
the method ``numpy.percentile`` uses by default.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from radpilot.pipeline.worklist_query import shown_job
from radpilot.pipeline.worklist_rows import as_utc
from radpilot.store.models import Study, utcnow
from radpilot.store.models_pipeline import (
    Delivery,
    Feedback,
    Job,
    ModelVersion,
    Result,
    ResultObject,
)

__all__ = ["STAGES", "LatencyReport", "StageStats", "latency_report", "percentile"]

#: (name, start stamp, end stamp), in the order a study goes through them.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("received_to_complete", "received", "complete"),
    ("complete_to_queued", "complete", "queued"),
    ("queued_to_inference_start", "queued", "inference_start"),
    ("inference", "inference_start", "inference_end"),
    ("inference_end_to_stored", "inference_end", "stored"),
    ("stored_to_delivered", "stored", "delivered"),
    ("delivered_to_opened", "delivered", "opened"),
    ("opened_to_decided", "opened", "decided"),
)
END_TO_END: tuple[tuple[str, str, str], ...] = (
    ("received_to_delivered", "received", "delivered"),
    ("received_to_decided", "received", "decided"),
)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values`` by linear interpolation (type 7).

    Raises
    ------
    ValueError
        If ``values`` is empty or ``q`` is outside 0..100.
    """
    if not values:
        raise ValueError("no values: a percentile needs at least one")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be between 0 and 100, not {q}")
    ordered = sorted(values)
    h = (len(ordered) - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


@dataclass(frozen=True)
class StageStats:
    """Durations of one stage, in seconds; ``None`` where there is no observation."""

    stage: str
    start: str
    end: str
    count: int
    out_of_order: int
    p50_seconds: float | None
    p95_seconds: float | None
    max_seconds: float | None


@dataclass(frozen=True)
class LatencyReport:
    """p50/p95 per stage and end to end over ``jobs`` observations."""

    generated_at: dt.datetime
    jobs: int
    stages: tuple[StageStats, ...]
    end_to_end: tuple[StageStats, ...]

    @property
    def empty(self) -> bool:
        """True when no stage has a single observation."""
        return all(s.count == 0 for s in (*self.stages, *self.end_to_end))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times in ISO 8601, durations in seconds)."""
        return {
            "generated_at": self.generated_at.isoformat(),
            "jobs": self.jobs,
            "no_data": self.empty,
            "percentile_method": "linear (Hyndman & Fan type 7, numpy.percentile default)",
            "stages": [asdict(s) for s in self.stages],
            "end_to_end": [asdict(s) for s in self.end_to_end],
        }


def _stats(
    name: str, start: str, end: str, rows: list[dict[str, dt.datetime | None]]
) -> StageStats:
    durations: list[float] = []
    out_of_order = 0
    for row in rows:
        a, b = row.get(start), row.get(end)
        if a is None or b is None:
            continue
        seconds = (b - a).total_seconds()
        if seconds < 0:
            out_of_order += 1
        else:
            durations.append(seconds)
    if not durations:
        return StageStats(name, start, end, 0, out_of_order, None, None, None)
    return StageStats(
        name,
        start,
        end,
        len(durations),
        out_of_order,
        percentile(durations, 50),
        percentile(durations, 95),
        max(durations),
    )


def _observations(
    session: Session, model: str | None, since: dt.datetime | None
) -> tuple[list[dict[str, dt.datetime | None]], list[dict[str, dt.datetime | None]]]:
    delivered = (
        select(ResultObject.result_pk, func.max(Delivery.delivered_at).label("at"))
        .join(Delivery, Delivery.object_pk == ResultObject.id)
        .where(Delivery.delivered_at.is_not(None))
        .group_by(ResultObject.result_pk)
        .subquery("delivered")
    )
    stmt = (
        select(
            Study.id,
            Study.last_received_at,
            Study.completed_at,
            Job.queued_at,
            Job.inference_started_at,
            Job.inference_ended_at,
            Result.id,
            Result.stored_at,
            delivered.c.at,
        )
        .join(Study, Job.study_pk == Study.id)
        .join(ModelVersion, Job.model_version_pk == ModelVersion.id)
        .outerjoin(Result, Result.job_pk == Job.id)
        .outerjoin(delivered, delivered.c.result_pk == Result.id)
        .where(shown_job())
    )
    if model:
        name, _, version = model.partition(":")
        stmt = stmt.where(ModelVersion.name == name)
        if version:
            stmt = stmt.where(ModelVersion.version == version)
    if since is not None:
        stmt = stmt.where(Job.queued_at >= as_utc(since))
    jobs = session.execute(stmt).all()
    result_ids = [r[6] for r in jobs if r[6] is not None]
    first: dict[int | None, tuple[dt.datetime | None, dt.datetime | None]] = {}
    if result_ids:
        for fb_result, fb_opened, fb_decided in session.execute(
            select(Feedback.result_pk, Feedback.opened_at, Feedback.decided_at)
            .where(Feedback.result_pk.in_(result_ids))
            .order_by(Feedback.decided_at.desc(), Feedback.id.desc())
        ):
            first[fb_result] = (fb_opened, fb_decided)  # the last one set is the earliest

    def utc(value: dt.datetime | None) -> dt.datetime | None:
        return None if value is None else as_utc(value)

    rows, studies = [], {}
    for study_pk, received, complete, queued, start, end, result_pk, stored, sent in jobs:
        opened, decided = first.get(result_pk, (None, None))
        rows.append(
            {
                "received": utc(received),
                "complete": utc(complete),
                "queued": utc(queued),
                "inference_start": utc(start),
                "inference_end": utc(end),
                "stored": utc(stored),
                "delivered": utc(sent),
                "opened": utc(opened),
                "decided": utc(decided),
            }
        )
        studies[study_pk] = {"received": utc(received), "complete": utc(complete)}
    return rows, list(studies.values())


def latency_report(
    session: Session,
    model: str | None = None,
    since: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> LatencyReport:
    """p50/p95 per stage and end to end, from the stamps on the rows.

    Parameters
    ----------
    session
        An open session; only read from.
    model
        Only jobs of this model, ``NAME`` or ``NAME:VERSION``.
    since
        Only jobs queued at or after this time.
    now
        The report's time stamp (default: now, UTC).
    """
    rows, studies = _observations(session, model, since)
    stages = tuple(
        _stats(name, a, b, studies if name == "received_to_complete" else rows)
        for name, a, b in STAGES
    )
    return LatencyReport(
        generated_at=as_utc(now) if now is not None else utcnow(),
        jobs=len(rows),
        stages=stages,
        end_to_end=tuple(_stats(name, a, b, rows) for name, a, b in END_TO_END),
    )
