"""The periodic post-market surveillance report of one model:
``radpilot governance surveillance --model NAME --from DATE --to DATE``.

For the period, per ``bucket_days`` (a week by default): volume (visible results), the
positive rate, and the radiologists' decisions (accept / modify / reject) with the
agreement rate (accepted of decided), each proportion with its Wilson 95% CI; over the
whole period, sensitivity and specificity against reference labels where studies have
them (``radpilot labels import``: each reader's latest read, majority, a tie decides
nothing); input drift of the period against the model's studies before it
(:func:`radpilot.monitoring.drift.compare`); every state change or transition request
in the period from the audit log; the alerts opened and the incidents reported in it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from typing import Any

from sqlalchemy import select

from radpilot.data.adjudication import latest_reads, majority_vote
from radpilot.monitoring.cbpe import Platt, estimate, fit_platt
from radpilot.monitoring.drift import compare
from radpilot.monitoring.features import study_features
from radpilot.store import Database
from radpilot.store.models import Read, as_utc
from radpilot.store.models_alerts import Alert, Incident
from radpilot.store.models_pipeline import AuditEntry, Decision, Feedback, ModelVersion, Result
from radpilot.validation.stats import Estimate, wilson

__all__ = ["SCHEMA", "build_surveillance"]

SCHEMA = "radpilot.surveillance/1"
_MIN_REFERENCE = 20


def _est(e: Estimate) -> dict[str, Any]:
    return {
        k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in e.to_dict().items()
    }


def _cbpe(
    db: Database, version_ids: list[int], results: list[Result], start: dt.datetime
) -> dict[str, Any]:
    """The label-free estimate over the period, calibrated on labelled studies before it
    when there are enough of both classes."""
    scored = [r for r in results if r.score is not None and r.threshold is not None]
    if not scored:
        return {"n": 0, "method": "CBPE", "estimate": True}
    with db.session() as session:
        earlier = session.execute(
            select(Result.study_pk, Result.score).where(
                Result.model_version_pk.in_(version_ids),
                Result.visible.is_(True),
                Result.stored_at < start,
                Result.score.is_not(None),
            )
        ).all()
        votes: dict[int, list[tuple[str, dt.datetime | None, int]]] = defaultdict(list)
        for read in session.scalars(select(Read).where(Read.study_pk.in_([e[0] for e in earlier]))):
            votes[read.study_pk].append((read.reader, read.read_at, read.value))
    scores: list[float] = []
    truths: list[int] = []
    for study, score in earlier:
        truth = majority_vote(latest_reads(votes.get(study, [])).values())
        if truth is not None and score is not None:
            scores.append(float(score))
            truths.append(truth)
    calibration: Platt | None = None
    try:
        calibration = fit_platt(scores, truths)
    except ValueError:
        calibration = None
    thresholds = sorted(float(r.threshold or 0.0) for r in scored)
    live = [float(r.score or 0.0) for r in scored]
    return estimate(live, thresholds[len(thresholds) // 2], calibration)


def build_surveillance(
    db: Database,
    model: str,
    start: dt.datetime,
    end: dt.datetime,
    bucket_days: int = 7,
) -> dict[str, Any]:
    """Everything the surveillance page shows, JSON-ready (times in UTC)."""
    start, end = as_utc(start), as_utc(end)
    with db.session() as session:
        versions = {
            v.id: v.label
            for v in session.scalars(select(ModelVersion).where(ModelVersion.name == model))
        }
        results = [
            r
            for r in session.scalars(
                select(Result)
                .where(Result.model_version_pk.in_(list(versions)), Result.visible.is_(True))
                .order_by(Result.stored_at)
            )
            if start <= as_utc(r.stored_at) < end
        ]
        ids = [r.id for r in results]
        feedback = list(session.scalars(select(Feedback).where(Feedback.result_pk.in_(ids))))
        studies = {r.study_pk for r in results}
        reads: dict[int, list[tuple[str, dt.datetime | None, int]]] = defaultdict(list)
        for read in session.scalars(select(Read).where(Read.study_pk.in_(list(studies)))):
            reads[read.study_pk].append((read.reader, read.read_at, read.value))
        labels = set(versions.values())
        actions = [
            {
                "at": as_utc(e.at).isoformat(timespec="seconds"),
                "kind": e.kind,
                "actor": e.actor,
                "subject": e.subject,
                "payload": e.payload,
            }
            for e in session.scalars(
                select(AuditEntry).where(AuditEntry.subject.in_(labels)).order_by(AuditEntry.seq)
            )
            if start <= as_utc(e.at) < end and e.kind.startswith("model.")
        ]
        alerts = [
            {
                "id": a.id,
                "cause": a.cause,
                "message": a.message,
                "status": a.status.value,
                "opened_at": as_utc(a.opened_at).isoformat(timespec="seconds"),
                "acknowledged_by": a.acknowledged_by,
            }
            for a in session.scalars(select(Alert).where(Alert.model == model).order_by(Alert.id))
            if start <= as_utc(a.opened_at) < end
        ]
        incidents = [
            {
                "id": i.id,
                "kind": i.kind.value,
                "severity": i.severity.value if i.severity else None,
                "status": i.status.value,
                "model": i.model,
                "actions": [x["action"] for x in i.actions],
                "reported_at": as_utc(i.reported_at).isoformat(timespec="seconds"),
            }
            for i in session.scalars(select(Incident).order_by(Incident.id))
            if start <= as_utc(i.reported_at) < end
            and ((i.model or "").partition(":")[0] == model or i.study_pk in studies)
        ]
        before = study_features(session, model, until=start)
        during = study_features(session, model, study_ids=sorted(studies))
    width = dt.timedelta(days=bucket_days)
    truth = {s: majority_vote(latest_reads(v).values()) for s, v in reads.items()}
    called = {r.study_pk: r.positive for r in results}
    agreed = {f.result_pk: f.decision is Decision.ACCEPT for f in feedback}
    by_study = {r.study_pk: r.id for r in results}

    def performance(study_ids: Any) -> dict[str, Any]:
        pairs = [(called[s], int(truth[s] or 0)) for s in study_ids if truth.get(s) is not None]
        sick = [c for c, t in pairs if t == 1]
        well = [c for c, t in pairs if t == 0]
        flagged = [t for c, t in pairs if c]
        return {
            "sensitivity": _est(wilson(sum(sick), len(sick))),
            "specificity": _est(wilson(sum(not c for c in well), len(well))),
            "ppv": _est(wilson(sum(flagged), len(flagged))),
        }

    buckets: list[dict[str, Any]] = []
    at = start
    while at < end:
        upto = min(at + width, end)
        inside = [r for r in results if at <= as_utc(r.stored_at) < upto]
        inside_ids = {r.id for r in inside}
        decided = [f for f in feedback if f.result_pk in inside_ids]
        counts = {d.value: sum(1 for f in decided if f.decision is d) for d in Decision}
        buckets.append(
            {
                "start": at.isoformat(timespec="seconds"),
                "end": upto.isoformat(timespec="seconds"),
                "results": len(inside),
                "positive_rate": _est(wilson(sum(r.positive for r in inside), len(inside))),
                "decisions": counts,
                "agreement": _est(wilson(counts["accept"], len(decided))),
                **performance({r.study_pk for r in inside}),
            }
        )
        at = upto
    subgroups: dict[str, dict[str, Any]] = {}
    for row in during:
        age = row.numeric.get("age_years")
        band = None if age is None else ("0-17" if age < 18 else "18-64" if age < 65 else "65+")
        keys = {
            "sex": row.categorical.get("sex"),
            "age": band,
            "manufacturer": row.categorical.get("manufacturer"),
            "site": row.categorical.get("site"),
        }
        for attribute, value in keys.items():
            group = subgroups.setdefault(attribute, {}).setdefault(value or "(missing)", [])
            group.append(row.study_id)
    subgroup_rows = {
        attribute: {
            value: {
                "studies": len(ids),
                "positive_rate": _est(wilson(sum(called[s] for s in ids), len(ids))),
                "agreement": _est(
                    wilson(
                        sum(agreed[by_study[s]] for s in ids if by_study[s] in agreed),
                        sum(1 for s in ids if by_study[s] in agreed),
                    )
                ),
                **performance(ids),
            }
            for value, ids in sorted(groups.items())
        }
        for attribute, groups in subgroups.items()
    }
    pairs = [(called[s], t) for s, t in truth.items() if t is not None and s in called]
    sensitivity = wilson(
        sum(1 for c, t in pairs if t == 1 and c), sum(1 for _, t in pairs if t == 1)
    )
    specificity = wilson(
        sum(1 for c, t in pairs if t == 0 and not c), sum(1 for _, t in pairs if t == 0)
    )
    drift: dict[str, Any]
    reference = before if len(before) >= _MIN_REFERENCE else during[: len(during) // 2]
    live = during if len(before) >= _MIN_REFERENCE else during[len(during) // 2 :]
    if len(reference) >= _MIN_REFERENCE // 2 and live:
        comparison = compare(reference, live)
        drift = {
            "reference": "studies before the period"
            if reference is before
            else "the first half of the period",
            "reference_n": len(reference),
            "live_n": len(live),
            "drifted": comparison.drifted,
            "fields": [
                {
                    "field": f.name,
                    "statistic": f.statistic,
                    "p_value": f.p_value,
                    "drifted": f.drifted,
                    "detail": f.detail,
                }
                for f in comparison.fields
                if f.drifted
            ],
        }
    else:
        drift = {
            "reference": None,
            "drifted": [],
            "fields": [],
            "note": "too few studies to compare",
        }
    decided_all = len(feedback)
    accepted = sum(1 for f in feedback if f.decision is Decision.ACCEPT)
    return {
        "schema": SCHEMA,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": model,
        "versions": sorted(versions.values()),
        "period": {
            "start": start.isoformat(timespec="seconds"),
            "end": end.isoformat(timespec="seconds"),
            "bucket_days": bucket_days,
        },
        "totals": {
            "results": len(results),
            "studies": len(studies),
            "positives": sum(r.positive for r in results),
            "decisions": decided_all,
            "agreement": _est(wilson(accepted, decided_all)),
            "with_reference_label": len(pairs),
            "sensitivity": _est(sensitivity),
            "specificity": _est(specificity),
            "ppv": performance(list(called))["ppv"],
            "estimated": _cbpe(db, list(versions), results, start),
        },
        "subgroups": subgroup_rows,
        "buckets": buckets,
        "drift": drift,
        "actions": actions,
        "alerts": alerts,
        "incidents": incidents,
    }
