"""The numbers of the monitoring dashboard: one row per day for one model, and the
turnaround ("time saved") comparisons.

Per UTC day over the last ``days``: visible results, positives and the positive rate
(Wilson 95% CI), decisions and the agreement rate (accepted of decided), failed jobs,
latency received → result stored (median, p95), turnaround received → first decision
(median) for flagged (positive) and unflagged studies, and sensitivity and specificity
(Wilson 95% CI) over the day's results whose studies have a reference label (reads and
outcomes: each reader's latest read, majority; a tie decides nothing). The validated
baseline drawn in: the positive rate of the alert rules, and the sensitivity and
specificity the newest version's manifest states for its default operating point. Over
the whole window: the median turnaround of flagged and unflagged studies and their
difference with a 95% bootstrap CI — how much sooner flagged studies were decided; and
report turnaround before against after activation
(:mod:`radpilot.monitoring.turnaround`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from radpilot.data.adjudication import latest_reads, majority_vote
from radpilot.monitoring.dashboard_drift import daily_drift
from radpilot.monitoring.turnaround import median_difference, turnaround_around_activation
from radpilot.store import Database
from radpilot.store.models import Read, Study, as_utc
from radpilot.store.models_pipeline import Feedback, Job, JobStatus, ModelVersion, Result
from radpilot.validation.stats import wilson

__all__ = ["COLUMNS", "dashboard", "newest_manifest", "validated_figures", "window"]

COLUMNS = (
    "day",
    "results",
    "positives",
    "positive_rate",
    "positive_rate_low",
    "positive_rate_high",
    "decisions",
    "agreement",
    "agreement_low",
    "agreement_high",
    "failed_jobs",
    "latency_p50_s",
    "latency_p95_s",
    "turnaround_flagged_p50_s",
    "turnaround_unflagged_p50_s",
    "labelled",
    "sensitivity",
    "sensitivity_low",
    "sensitivity_high",
    "specificity",
    "specificity_low",
    "specificity_high",
    "drift_studies",
    "drifted_fields",
    "drifted",
    "embedding_mmd",
)
_DRIFT = ("drift_studies", "drifted_fields", "drifted", "embedding_mmd")


def _nan(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 6)


def _pct(values: list[float], q: float) -> float | None:
    return None if not values else round(float(np.percentile(values, q)), 3)


def _time_saved(flagged: list[float], unflagged: list[float]) -> dict[str, Any]:
    found = median_difference(unflagged, flagged)
    return {
        "flagged_n": found["faster_n"],
        "unflagged_n": found["slower_n"],
        "flagged_median_s": found.get("faster_median_s"),
        "unflagged_median_s": found.get("slower_median_s"),
        "saved_s": found["saved_s"],
        "saved_low_s": found.get("saved_low_s"),
        "saved_high_s": found.get("saved_high_s"),
    }


def window(days: int, now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """``(since, now)``: from the start (UTC) of the first of the last ``days`` days."""
    now = as_utc(now or dt.datetime.now(dt.UTC))
    first_day = (now - dt.timedelta(days=days - 1)).date()
    return dt.datetime(first_day.year, first_day.month, first_day.day, tzinfo=dt.UTC), now


def newest_manifest(session: Session, model: str) -> dict[str, Any]:
    """The manifest of the version of ``model`` added last ({} without one)."""
    newest = session.scalars(
        select(ModelVersion).where(ModelVersion.name == model).order_by(ModelVersion.id.desc())
    ).first()
    return dict(newest.manifest or {}) if newest is not None else {}


def validated_figures(manifest: dict[str, Any]) -> dict[str, Any]:
    """The default operating point's stated sensitivity and specificity."""
    output = manifest.get("output") or {}
    points = output.get("operating_points") or []
    wanted = output.get("default_operating_point")
    point = next((p for p in points if wanted is None or p.get("name") == wanted), None)
    if point is None:
        return {"operating_point": None, "sensitivity": None, "specificity": None}
    return {
        "operating_point": point.get("name"),
        "sensitivity": point.get("sensitivity"),
        "specificity": point.get("specificity"),
    }


def dashboard(
    db: Database,
    model: str,
    days: int = 30,
    now: dt.datetime | None = None,
    validated_rate: float | None = None,
    drift: bool = False,
) -> dict[str, Any]:
    """The dashboard of ``model`` over the last ``days`` days (JSON-ready); with ``drift``,
    each day's input drift too (:mod:`radpilot.monitoring.dashboard_drift`, the slow part:
    one comparison per day)."""
    since, now = window(days, now)
    first_day = since.date()
    with db.session() as session:
        results = session.execute(
            select(
                Result.id,
                Result.study_pk,
                Result.positive,
                Result.stored_at,
                Study.last_received_at,
            )
            .join(Study, Result.study_pk == Study.id)
            .join(ModelVersion, Result.model_version_pk == ModelVersion.id)
            .where(ModelVersion.name == model, Result.visible.is_(True), Result.stored_at >= since)
        ).all()
        ids = [r.id for r in results]
        first_decision = dict(
            session.execute(
                select(Feedback.result_pk, func.min(Feedback.decided_at))
                .where(Feedback.result_pk.in_(ids))
                .group_by(Feedback.result_pk)
            ).all()
        )
        decisions = session.execute(
            select(Feedback.result_pk, Feedback.decision, Feedback.decided_at).where(
                Feedback.result_pk.in_(ids)
            )
        ).all()
        votes: dict[int, list[tuple[str, dt.datetime | None, int]]] = defaultdict(list)
        studies = sorted({r.study_pk for r in results})
        for start in range(0, len(studies), 500):
            for read in session.scalars(
                select(Read).where(Read.study_pk.in_(studies[start : start + 500]))
            ):
                votes[read.study_pk].append((read.reader, read.read_at, read.value))
        manifest = newest_manifest(session, model)
        validated = validated_figures(manifest)
        activation = turnaround_around_activation(session, model, manifest, days)
        failed = session.execute(
            select(Job.finished_at)
            .join(ModelVersion, Job.model_version_pk == ModelVersion.id)
            .where(
                ModelVersion.name == model, Job.status == JobStatus.FAILED, Job.finished_at >= since
            )
        ).all()
    by_day: dict[dt.date, dict[str, Any]] = defaultdict(lambda: defaultdict(list))
    flagged_all: list[float] = []
    unflagged_all: list[float] = []
    for r in results:
        bucket = by_day[as_utc(r.stored_at).date()]
        bucket["positive"].append(bool(r.positive))
        bucket["latency"].append((as_utc(r.stored_at) - as_utc(r.last_received_at)).total_seconds())
        truth = majority_vote(latest_reads(votes.get(r.study_pk, [])).values())
        if truth == 1:
            bucket["sick"].append(bool(r.positive))
        elif truth == 0:
            bucket["well"].append(not r.positive)
        decided = first_decision.get(r.id)
        if decided is not None:
            wait = (as_utc(decided) - as_utc(r.last_received_at)).total_seconds()
            (bucket["flagged"] if r.positive else bucket["unflagged"]).append(wait)
            (flagged_all if r.positive else unflagged_all).append(wait)
    for d in decisions:
        by_day[as_utc(d.decided_at).date()]["decided"].append(d.decision.value == "accept")
    for (finished,) in failed:
        if finished is not None:
            by_day[as_utc(finished).date()]["failed"].append(1)
    rows = []
    for offset in range(days):
        day = first_day + dt.timedelta(days=offset)
        v: dict[str, Any] = by_day.get(day, {})
        positive, decided = v.get("positive", []), v.get("decided", [])
        rate, agree = wilson(sum(positive), len(positive)), wilson(sum(decided), len(decided))
        sick, well = v.get("sick", []), v.get("well", [])
        sens, spec = wilson(sum(sick), len(sick)), wilson(sum(well), len(well))
        rows.append(
            {
                "day": day.isoformat(),
                "results": len(positive),
                "positives": sum(positive),
                "positive_rate": _nan(rate.value),
                "positive_rate_low": _nan(rate.low),
                "positive_rate_high": _nan(rate.high),
                "decisions": len(decided),
                "agreement": _nan(agree.value),
                "agreement_low": _nan(agree.low),
                "agreement_high": _nan(agree.high),
                "failed_jobs": len(v.get("failed", [])),
                "latency_p50_s": _pct(v.get("latency", []), 50),
                "latency_p95_s": _pct(v.get("latency", []), 95),
                "turnaround_flagged_p50_s": _pct(v.get("flagged", []), 50),
                "turnaround_unflagged_p50_s": _pct(v.get("unflagged", []), 50),
                "labelled": len(sick) + len(well),
                "sensitivity": _nan(sens.value),
                "sensitivity_low": _nan(sens.low),
                "sensitivity_high": _nan(sens.high),
                "specificity": _nan(spec.value),
                "specificity_low": _nan(spec.low),
                "specificity_high": _nan(spec.high),
            }
        )
    drifts: dict[str, Any] = {"reference": None, "reference_n": 0, "days": {}}
    if drift:
        drifts = daily_drift(db, model, since)
    for row in rows:
        found = drifts["days"].get(row["day"], {})
        row.update({key: found.get(key) for key in _DRIFT})
    return {
        "model": model,
        "days": days,
        "drift_reference": {k: drifts[k] for k in ("reference", "reference_n")},
        "since": since.isoformat(),
        "until": now.isoformat(),
        "validated_rate": validated_rate,
        "validated": validated,
        "rows": rows,
        "time_saved": _time_saved(flagged_all, unflagged_all),
        "activation": activation,
    }
