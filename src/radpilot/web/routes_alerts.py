"""Alerts and incidents over the API.

* ``GET /api/alerts[?status=open|acknowledged|resolved]``, ``POST /api/alerts/{id}/
  acknowledge`` and ``.../resolve`` — governance and admin;
* ``POST /api/studies/{id}/incidents`` — anyone signed in reports an incident;
* ``GET /api/governance/incidents``, ``POST /api/governance/incidents/{id}/classify``,
  ``.../actions`` and ``.../close`` — governance.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from radpilot.governance import incidents
from radpilot.monitoring import alerts
from radpilot.store.models_alerts import (
    Alert,
    AlertStatus,
    Incident,
    IncidentKind,
    IncidentStatus,
    Severity,
)
from radpilot.store.models_users import Role
from radpilot.web.deps import Actor, CurrentActor, DbDep, SettingsDep, require_roles
from radpilot.web.schemas import ErrorOut

__all__ = ["router"]

Overseer = Annotated[Actor, Depends(require_roles(Role.GOVERNANCE, Role.ADMIN))]
Governance = Annotated[Actor, Depends(require_roles(Role.GOVERNANCE))]

router = APIRouter(
    prefix="/api",
    tags=["monitoring"],
    responses={
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        404: {"model": ErrorOut},
        409: {"model": ErrorOut},
    },
)


class AlertOut(BaseModel):
    """An alert as the dashboard shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    model: str
    cause: str
    message: str
    value: float | None
    threshold: float | None
    status: AlertStatus
    opened_at: dt.datetime
    last_seen_at: dt.datetime
    seen: int
    acknowledged_by: str | None
    acknowledged_at: dt.datetime | None
    resolved_by: str | None
    resolved_at: dt.datetime | None
    notified: list[Any]


class IncidentIn(BaseModel):
    """A report."""

    model_config = ConfigDict(extra="forbid")

    kind: IncidentKind
    description: str = Field(min_length=1, max_length=4000)
    result_id: int | None = Field(None, ge=1)


class IncidentOut(BaseModel):
    """An incident (the description only for governance)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    study_pk: int
    result_pk: int | None
    model: str | None
    kind: IncidentKind
    description: str
    reported_by: str
    reported_at: dt.datetime
    severity: Severity | None
    classified_by: str | None
    status: IncidentStatus
    actions: list[Any]
    closed_by: str | None
    closed_at: dt.datetime | None


class SeverityIn(BaseModel):
    """Governance's classification."""

    model_config = ConfigDict(extra="forbid")

    severity: Severity


class ActionIn(BaseModel):
    """An action linked to an incident."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(pattern="^(suspend_model|retrain|change_threshold|other)$")
    note: str = Field("", max_length=2000)


class ReportedOut(BaseModel):
    """The id of a new incident."""

    id: int


@router.get("/alerts", response_model=list[AlertOut])
def list_alerts(
    db: DbDep,
    _actor: Overseer,
    state: Annotated[AlertStatus | None, Query(alias="status")] = None,
) -> list[AlertOut]:
    """Alerts, newest first."""
    query = select(Alert).order_by(Alert.id.desc())
    if state is not None:
        query = query.where(Alert.status == state)
    with db.session() as session:
        return [AlertOut.model_validate(a) for a in session.scalars(query)]


def _alert(db: Any, alert_id: int, to: AlertStatus, actor: Actor) -> AlertOut:
    try:
        return AlertOut.model_validate(alerts.transition(db, alert_id, to, actor.id))
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertOut)
def acknowledge(db: DbDep, actor: Overseer, alert_id: int) -> AlertOut:
    """Acknowledge: a named person has seen it (audited)."""
    return _alert(db, alert_id, AlertStatus.ACKNOWLEDGED, actor)


@router.post("/alerts/{alert_id}/resolve", response_model=AlertOut)
def resolve(db: DbDep, actor: Overseer, alert_id: int) -> AlertOut:
    """Resolve: handled (audited); the cause may open a new alert when it fires again."""
    return _alert(db, alert_id, AlertStatus.RESOLVED, actor)


def _incident_call(call: Any) -> Any:
    try:
        return call()
    except incidents.IncidentError as exc:
        raise HTTPException(exc.status, str(exc)) from None


@router.post("/studies/{study_id}/incidents", response_model=ReportedOut, status_code=201)
def report_incident(db: DbDep, actor: CurrentActor, study_id: str, body: IncidentIn) -> ReportedOut:
    """Report an AI incident from a study (any role)."""
    found = _incident_call(
        lambda: incidents.report(
            db, study_id, body.kind, body.description, actor=actor.id, result_id=body.result_id
        )
    )
    return ReportedOut(id=found)


@router.get("/governance/incidents", response_model=list[IncidentOut])
def list_incidents(db: DbDep, _actor: Overseer) -> list[IncidentOut]:
    """Every incident, newest first."""
    with db.session() as session:
        return [
            IncidentOut.model_validate(i)
            for i in session.scalars(select(Incident).order_by(Incident.id.desc()))
        ]


def _incident(db: Any, incident_id: int) -> IncidentOut:
    with db.session() as session:
        found = session.get(Incident, incident_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no incident {incident_id}")
        return IncidentOut.model_validate(found)


@router.post("/governance/incidents/{incident_id}/classify", response_model=IncidentOut)
def classify(db: DbDep, actor: Governance, incident_id: int, body: SeverityIn) -> IncidentOut:
    """Classify the severity (governance)."""
    _incident_call(lambda: incidents.classify(db, incident_id, body.severity, actor=actor.id))
    return _incident(db, incident_id)


@router.post("/governance/incidents/{incident_id}/actions", response_model=IncidentOut)
def add_action(
    db: DbDep, settings: SettingsDep, actor: Governance, incident_id: int, body: ActionIn
) -> IncidentOut:
    """Link an action; ``suspend_model`` suspends the model version at once."""
    _incident_call(
        lambda: incidents.add_action(
            db, settings, incident_id, body.action, body.note, actor=actor.id
        )
    )
    return _incident(db, incident_id)


@router.post("/governance/incidents/{incident_id}/close", response_model=IncidentOut)
def close(db: DbDep, actor: Governance, incident_id: int) -> IncidentOut:
    """Close a classified incident."""
    _incident_call(lambda: incidents.close(db, incident_id, actor=actor.id))
    return _incident(db, incident_id)
