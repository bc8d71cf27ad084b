"""Model lifecycle over the API (``radpilot.governance.lifecycle``): requests, approvals and
the embedded mode's direct admin transition. Refusals answer 409 (or 403 for a role that
may not act, 404 for an unknown model or transition) with the reason, and are audited."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from radpilot.core.errors import ModelError
from radpilot.governance import lifecycle
from radpilot.store.models_governance import Transition, TransitionStatus
from radpilot.store.models_pipeline import ModelState
from radpilot.web.deps import CurrentActor, DbDep, SettingsDep
from radpilot.web.schemas import ErrorOut

__all__ = ["router"]

router = APIRouter(
    prefix="/api/governance",
    tags=["governance"],
    responses={
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        404: {"model": ErrorOut},
        409: {"model": ErrorOut},
    },
)


class TransitionIn(BaseModel):
    """A requested state change."""

    model_config = ConfigDict(extra="forbid")

    to: ModelState
    reason: str = Field(min_length=1, max_length=2000)


class DecisionIn(BaseModel):
    """An approver's comment."""

    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(None, max_length=2000)


class ApprovalOut(BaseModel):
    """One approver's decision."""

    model_config = ConfigDict(from_attributes=True)

    approver: str
    role: str
    approved: bool
    comment: str | None
    at: dt.datetime


class TransitionOut(BaseModel):
    """A transition request and where it stands."""

    id: int
    model: str
    from_state: ModelState
    to_state: ModelState
    reason: str
    requested_by: str
    requested_at: dt.datetime
    status: TransitionStatus
    decided_at: dt.datetime | None
    approvals_needed: int
    approvals: list[ApprovalOut]
    comparison: dict[str, Any] | None


class StateOut(BaseModel):
    """A model version's state after a direct transition."""

    model: str
    state: ModelState


def _out(t: Transition) -> TransitionOut:
    return TransitionOut(
        id=t.id,
        model=t.model_version.label,
        from_state=t.from_state,
        to_state=t.to_state,
        reason=t.reason,
        requested_by=t.requested_by,
        requested_at=t.requested_at,
        status=t.status,
        decided_at=t.decided_at,
        approvals_needed=lifecycle.POLICY[t.to_state].count,
        approvals=[ApprovalOut.model_validate(a) for a in t.approvals],
        comparison=t.comparison,
    )


def _http(exc: lifecycle.LifecycleError) -> HTTPException:
    return HTTPException(exc.status, str(exc))


def _reload(db: Any, transition_id: int) -> TransitionOut:
    with db.session() as session:
        found = session.get(Transition, transition_id)
        assert found is not None
        return _out(found)


@router.get("/transitions", response_model=list[TransitionOut])
def transitions(
    db: DbDep,
    _actor: CurrentActor,
    state: Annotated[TransitionStatus | None, Query(alias="status")] = None,
) -> list[TransitionOut]:
    """Transition requests, newest first (any signed-in role may look)."""
    query = select(Transition).order_by(Transition.id.desc())
    if state is not None:
        query = query.where(Transition.status == state)
    with db.session() as session:
        return [_out(t) for t in session.scalars(query)]


@router.post(
    "/models/{name}/{version}/transitions",
    response_model=TransitionOut,
    status_code=status.HTTP_201_CREATED,
)
def request_transition(
    db: DbDep,
    settings: SettingsDep,
    actor: CurrentActor,
    name: str,
    version: str,
    body: TransitionIn,
) -> TransitionOut:
    """Request a transition (governance or admin); carried out once approved."""
    if settings.governance != "governed":
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "this installation is not governed (RADPILOT_GOVERNANCE=embedded): an "
            "administrator changes states directly (POST /api/admin/models/.../state)",
        )
    try:
        request = lifecycle.request_transition(
            db,
            settings,
            name,
            version,
            body.to,
            actor=actor.id,
            role=actor.role,
            reason=body.reason,
        )
    except lifecycle.LifecycleError as exc:
        raise _http(exc) from None
    return _reload(db, request.id)


def _decide(
    db: Any, settings: Any, actor: Any, transition_id: int, approved: bool, body: DecisionIn
) -> TransitionOut:
    try:
        lifecycle.approve(
            db,
            settings,
            transition_id,
            actor=actor.id,
            role=actor.role,
            approved=approved,
            comment=body.comment,
        )
    except lifecycle.LifecycleError as exc:
        raise _http(exc) from None
    return _reload(db, transition_id)


@router.post("/transitions/{transition_id}/approve", response_model=TransitionOut)
def approve(
    db: DbDep,
    settings: SettingsDep,
    actor: CurrentActor,
    transition_id: int,
    body: DecisionIn | None = None,
) -> TransitionOut:
    """Approve; the transition is carried out when it has the approvals it needs."""
    return _decide(db, settings, actor, transition_id, True, body or DecisionIn())


@router.post("/transitions/{transition_id}/reject", response_model=TransitionOut)
def reject(
    db: DbDep,
    settings: SettingsDep,
    actor: CurrentActor,
    transition_id: int,
    body: DecisionIn | None = None,
) -> TransitionOut:
    """Reject: the request ends without a change."""
    return _decide(db, settings, actor, transition_id, False, body or DecisionIn())


admin_router = APIRouter(prefix="/api/admin", tags=["admin"], responses=router.responses)


@admin_router.post("/models/{name}/{version}/state", response_model=StateOut)
def direct_state(
    db: DbDep,
    settings: SettingsDep,
    actor: CurrentActor,
    name: str,
    version: str,
    body: TransitionIn,
) -> StateOut:
    """Embedded mode only: an administrator's direct transition, audited as unapproved."""
    try:
        row = lifecycle.direct_transition(
            db,
            settings,
            name,
            version,
            body.to,
            actor=actor.id,
            role=actor.role,
            reason=body.reason,
        )
    except lifecycle.LifecycleError as exc:
        raise _http(exc) from None
    except ModelError as exc:  # e.g. a retired version, which stays retired
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return StateOut(model=row.label, state=row.state)
