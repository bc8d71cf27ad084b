"""AI incidents: reported by anyone from a study, reviewed and closed by governance.

A report names the study (and the AI result, when it is about one), the kind and a
description (free text: stored, never logged, never in the audit payload). Governance
classifies the severity, links actions — ``suspend_model`` suspends the result's model
version at once (the safety action needs no approval, see docs/governance.md),
``retrain``, ``change_threshold`` and ``other`` are recorded for follow-up — and closes
it. Every step is an audit entry; the surveillance report counts incidents.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from radpilot.core.errors import RadpilotError
from radpilot.core.settings import Settings
from radpilot.governance.audit import AuditLog
from radpilot.models.registry import Registry
from radpilot.pipeline.worklist import find_study
from radpilot.store import Database
from radpilot.store.models import utcnow
from radpilot.store.models_alerts import Incident, IncidentKind, IncidentStatus, Severity
from radpilot.store.models_pipeline import ModelState, ModelVersion, Result

__all__ = ["ACTIONS", "IncidentError", "add_action", "classify", "close", "report"]

ACTIONS = ("suspend_model", "retrain", "change_threshold", "other")


class IncidentError(RadpilotError):
    """An incident step that cannot be done (``status``: the HTTP answer that fits)."""

    status = 409


def _get(session: Any, incident_id: int) -> Incident:
    found: Incident | None = session.get(Incident, incident_id)
    if found is None:
        error = IncidentError(f"no incident {incident_id}")
        error.status = 404
        raise error
    return found


def report(
    db: Database,
    study: int | str,
    kind: IncidentKind,
    description: str,
    *,
    actor: str,
    result_id: int | None = None,
) -> int:
    """Record a report; its id.

    Raises
    ------
    radpilot.pipeline.worklist.StudyNotFoundError
        If there is no such study.
    IncidentError
        If ``result_id`` is not a visible result of that study.
    """
    with db.session() as session:
        found = find_study(session, study)
        model = None
        if result_id is not None:
            row = session.execute(
                select(Result, ModelVersion)
                .join(ModelVersion, Result.model_version_pk == ModelVersion.id)
                .where(Result.id == result_id, Result.study_pk == found.id, Result.visible)
            ).first()
            if row is None:
                raise IncidentError(f"result {result_id} is not an AI result of this study")
            model = row[1].label
        incident = Incident(
            study_pk=found.id,
            result_pk=result_id,
            model=model,
            kind=kind,
            description=description,
            reported_by=actor,
        )
        session.add(incident)
        session.flush()
        AuditLog(db).append(
            "incident.report",
            actor,
            found.study_instance_uid,
            {"incident": incident.id, "kind": kind.value, "model": model, "result": result_id},
            session=session,
        )
        session.commit()
        return incident.id


def classify(db: Database, incident_id: int, severity: Severity, *, actor: str) -> None:
    """Set the severity (the incident is then under review); audited."""
    with db.session() as session:
        incident = _get(session, incident_id)
        if incident.status is IncidentStatus.CLOSED:
            raise IncidentError(f"incident {incident_id} is closed")
        incident.severity, incident.classified_by = severity, actor
        incident.status = IncidentStatus.REVIEWED
        AuditLog(db).append(
            "incident.classify",
            actor,
            f"incident:{incident_id}",
            {"severity": severity.value},
            session=session,
        )
        session.commit()


def add_action(
    db: Database, settings: Settings, incident_id: int, action: str, note: str, *, actor: str
) -> dict[str, Any]:
    """Link an action; ``suspend_model`` suspends the incident's model version now.

    Raises
    ------
    IncidentError
        For an unknown action, a closed incident, or ``suspend_model`` without a model.
    """
    if action not in ACTIONS:
        raise IncidentError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    with db.session() as session:
        incident = _get(session, incident_id)
        if incident.status is IncidentStatus.CLOSED:
            raise IncidentError(f"incident {incident_id} is closed")
        model = incident.model
    entry: dict[str, Any] = {
        "action": action,
        "note": note,
        "by": actor,
        "at": utcnow().isoformat(timespec="seconds"),
    }
    if action == "suspend_model":
        if model is None:
            raise IncidentError("this incident names no AI result, so no model to suspend")
        name, _, version = model.partition(":")
        Registry(db, settings.models_dir).set_state(
            name,
            version,
            ModelState.SUSPENDED,
            actor=actor,
            reason=f"incident {incident_id}: {note}",
            approval=f"none needed: suspension for incident {incident_id}",
        )
        entry["model"] = model
    with db.session() as session:
        incident = _get(session, incident_id)
        incident.actions = [*incident.actions, entry]
        AuditLog(db).append(
            "incident.action",
            actor,
            f"incident:{incident_id}",
            {"action": action, "model": entry.get("model")},
            session=session,
        )
        session.commit()
    return entry


def close(db: Database, incident_id: int, *, actor: str) -> None:
    """Close a classified incident; audited.

    Raises
    ------
    IncidentError
        If it is not classified yet, or closed already.
    """
    with db.session() as session:
        incident = _get(session, incident_id)
        if incident.status is not IncidentStatus.REVIEWED:
            raise IncidentError(
                f"incident {incident_id} is {incident.status.value}; classify it before closing"
            )
        incident.status, incident.closed_by, incident.closed_at = (
            IncidentStatus.CLOSED,
            actor,
            utcnow(),
        )
        AuditLog(db).append(
            "incident.close",
            actor,
            f"incident:{incident_id}",
            {"severity": incident.severity.value if incident.severity else None},
            session=session,
        )
        session.commit()
