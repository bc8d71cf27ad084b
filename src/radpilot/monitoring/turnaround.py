"""Turnaround before and after a model went active: the hospital's own "time saved".

Flagged against unflagged studies (the dashboard's other figure) shows the worklist
reordering at work, but it compares different studies. The question a governance
committee asks is whether reporting got faster once the model was live. radpilot holds no
radiologist decisions from before activation, so both periods are measured the same way,
by the hospital's report times: received (the study's last instance) → the first final
report that arrived as an outcome (``radpilot outcomes import|listen``; a read of reader
``outcome:*`` with a report time). Studies count when one of their series has a modality
the model applies to (the newest version's ``applies_to.modalities``; all studies when it
names none), received within ``days`` before or after the first time a version of the
model became active (the ``model.state`` audit entry). The difference of the medians has
a 95% bootstrap CI (2,000 resamples of studies within each period).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from radpilot.store.models import Read, Series, Study, as_utc
from radpilot.store.models_pipeline import AuditEntry, ModelState, ModelVersion

__all__ = ["activation_time", "median_difference", "turnaround_around_activation"]


def median_difference(slower: list[float], faster: list[float], reps: int = 2000) -> dict[str, Any]:
    """``median(slower) - median(faster)`` with a 95% percentile bootstrap CI (seeded);
    ``saved_s`` None when either side has fewer than two values."""
    if len(slower) < 2 or len(faster) < 2:
        return {"slower_n": len(slower), "faster_n": len(faster), "saved_s": None}
    a, b = np.asarray(slower, dtype=float), np.asarray(faster, dtype=float)
    rng = np.random.default_rng(0)
    diffs = np.median(rng.choice(a, (reps, a.size)), axis=1) - np.median(
        rng.choice(b, (reps, b.size)), axis=1
    )
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {
        "slower_n": int(a.size),
        "faster_n": int(b.size),
        "slower_median_s": round(float(np.median(a)), 3),
        "faster_median_s": round(float(np.median(b)), 3),
        "saved_s": round(float(np.median(a) - np.median(b)), 3),
        "saved_low_s": round(float(low), 3),
        "saved_high_s": round(float(high), 3),
    }


def activation_time(session: Session, model: str) -> dt.datetime | None:
    """When a version of ``model`` first became active, from the audit log."""
    labels = [f"{model}:{v}" for v in session.scalars(
        select(ModelVersion.version).where(ModelVersion.name == model)
    )]  # fmt: skip
    if not labels:
        return None
    for entry in session.scalars(
        select(AuditEntry)
        .where(AuditEntry.kind == "model.state", AuditEntry.subject.in_(labels))
        .order_by(AuditEntry.seq)
    ):
        if (entry.payload or {}).get("to") == ModelState.ACTIVE.value:
            return as_utc(entry.at)
    return None


def turnaround_around_activation(
    session: Session, model: str, manifest: dict[str, Any], days: int = 30
) -> dict[str, Any]:
    """Report turnaround ``days`` before against ``days`` after activation (JSON-ready);
    ``manifest`` is the newest version's, whose ``applies_to`` chooses the studies."""
    activated = activation_time(session, model)
    if activated is None:
        return {"activated_at": None, "note": "the model has not been active"}
    applies = manifest.get("applies_to") or {}
    modalities = [m.upper() for m in applies.get("modalities") or []]
    span = dt.timedelta(days=days)
    reported = (
        select(Read.study_pk, func.min(Read.read_at).label("reported_at"))
        .where(Read.reader.like("outcome:%"), Read.read_at.is_not(None))
        .group_by(Read.study_pk)
        .subquery()
    )
    query = (
        select(Study.id, Study.last_received_at, reported.c.reported_at)
        .join(reported, reported.c.study_pk == Study.id)
        .where(
            Study.last_received_at >= activated - span,
            Study.last_received_at < activated + span,
        )
    )
    if modalities:
        query = query.where(
            Study.id.in_(select(Series.study_pk).where(Series.modality.in_(modalities)))
        )
    before: list[float] = []
    after: list[float] = []
    for _, received, reported_at in session.execute(query).all():
        wait = (as_utc(reported_at) - as_utc(received)).total_seconds()
        if wait < 0:  # a report before the images: not a turnaround
            continue
        (before if as_utc(received) < activated else after).append(wait)
    found = median_difference(before, after)
    return {
        "activated_at": activated.isoformat(timespec="seconds"),
        "days": days,
        "modalities": modalities,
        "before_n": found["slower_n"],
        "after_n": found["faster_n"],
        "before_median_s": found.get("slower_median_s"),
        "after_median_s": found.get("faster_median_s"),
        "saved_s": found["saved_s"],
        "saved_low_s": found.get("saved_low_s"),
        "saved_high_s": found.get("saved_high_s"),
    }
