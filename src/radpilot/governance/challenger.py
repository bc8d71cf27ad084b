"""Champion against challenger on the same live studies, for an approval.

When a version asks to leave shadow, radpilot compares it with the version now serving
(the active, else pilot, version of the same model) on every study both have a result
for: how often their calls agree, and — where the studies have reference labels or
outcomes (each reader's latest read, majority, ties left out) — each one's sensitivity
and specificity at its own operating point, all with Wilson 95% CIs. The comparison is
stored on the transition request, shown to the approvers and in the dossier.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from radpilot.data.adjudication import latest_reads, majority_vote
from radpilot.store.models import Read
from radpilot.store.models_pipeline import ModelState, ModelVersion, Result
from radpilot.validation.stats import wilson

__all__ = ["compare_with_champion"]


def _est(successes: int, trials: int) -> dict[str, Any]:
    e = wilson(successes, trials)
    return {
        "value": None if trials == 0 else e.value,
        "low": None if trials == 0 else e.low,
        "high": None if trials == 0 else e.high,
        "n": trials,
    }


def _calls(session: Session, version_id: int) -> dict[int, bool]:
    rows = session.execute(
        select(Result.study_pk, Result.positive)
        .where(Result.model_version_pk == version_id)
        .order_by(Result.id)
    ).all()
    return {study: bool(positive) for study, positive in rows}  # the latest per study


def compare_with_champion(session: Session, challenger: ModelVersion) -> dict[str, Any] | None:
    """The comparison, or None when no other version of the model is serving."""
    champions = [
        v
        for v in session.scalars(
            select(ModelVersion).where(
                ModelVersion.name == challenger.name, ModelVersion.id != challenger.id
            )
        )
        if v.state in (ModelState.ACTIVE, ModelState.PILOT)
    ]
    if not champions:
        return None
    champion = sorted(champions, key=lambda v: (v.state is ModelState.ACTIVE, v.id))[-1]
    theirs, ours = _calls(session, champion.id), _calls(session, challenger.id)
    both = sorted(set(theirs) & set(ours))
    votes: dict[int, list[tuple[str, Any, int]]] = {}
    for read in session.scalars(select(Read).where(Read.study_pk.in_(both))):
        votes.setdefault(read.study_pk, []).append((read.reader, read.read_at, read.value))
    truth = {s: majority_vote(latest_reads(v).values()) for s, v in votes.items()}
    labelled = [s for s in both if truth.get(s) is not None]
    out: dict[str, Any] = {
        "champion": champion.label,
        "challenger": challenger.label,
        "studies": len(both),
        "agreement": _est(sum(theirs[s] == ours[s] for s in both), len(both)),
        "labelled": len(labelled),
    }
    for name, calls in (("champion", theirs), ("challenger", ours)):
        sick = [s for s in labelled if truth[s] == 1]
        well = [s for s in labelled if truth[s] == 0]
        out[f"{name}_sensitivity"] = _est(sum(calls[s] for s in sick), len(sick))
        out[f"{name}_specificity"] = _est(sum(not calls[s] for s in well), len(well))
    return out
