"""Input drift per day for the dashboard: each day's studies against a reference window.

The reference is the model's last ``reference_size`` studies before the dashboard's first
day (the period it ran in before), or, when it has too few of those, its first
``reference_size`` studies, which are then left out of the days compared. Each day with at
least ``min_studies`` studies of the model is compared with
:func:`radpilot.monitoring.drift.compare` (headers, image statistics, the embedding, the
positive rate), and the day's row holds how many fields drifted, which, and the
embedding's MMD² — the drift statistics the dashboard plots over time.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from radpilot.monitoring.drift import compare
from radpilot.monitoring.features import StudyFeatures, study_features
from radpilot.store import Database
from radpilot.store.models import as_utc

__all__ = ["daily_drift"]


def daily_drift(
    db: Database,
    model: str,
    since: dt.datetime,
    *,
    reference_size: int = 200,
    min_studies: int = 10,
) -> dict[str, Any]:
    """``{"reference": how it was chosen, "reference_n": n, "days": {iso day: row}}``."""
    since = as_utc(since)
    with db.session() as session:
        rows = study_features(session, model)
    before = [r for r in rows if as_utc(r.received_at) < since]
    if len(before) >= min_studies:
        reference = before[-reference_size:]
        chosen = "the model's studies before the window"
        live = [r for r in rows if as_utc(r.received_at) >= since]
    else:
        reference = rows[:reference_size]
        chosen = f"the model's first {len(reference)} studies"
        live = [r for r in rows[len(reference) :] if as_utc(r.received_at) >= since]
    by_day: dict[dt.date, list[StudyFeatures]] = defaultdict(list)
    for row in live:
        by_day[as_utc(row.received_at).date()].append(row)
    days: dict[str, dict[str, Any]] = {}
    if len(reference) >= min_studies:
        for day, studies in sorted(by_day.items()):
            if len(studies) < min_studies:
                continue
            comparison = compare(reference, studies)
            embedding = next((f for f in comparison.fields if f.name == "embedding"), None)
            days[day.isoformat()] = {
                "drift_studies": len(studies),
                "drifted_fields": len(comparison.drifted),
                "drifted": ", ".join(comparison.drifted),
                "embedding_mmd": None if embedding is None else round(embedding.statistic, 6),
            }
    return {"reference": chosen, "reference_n": len(reference), "days": days}
