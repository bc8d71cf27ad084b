"""Model lifecycle: which state transitions exist, who must approve them, and carrying
them out through the registry — every request, approval, refusal and change audited.

States: registered → shadow → pilot → active → retired, with suspended reachable from
any running state (and left again towards shadow, pilot, active or retired). A request
that skips a state (registered → active) is refused. A version cannot leave shadow (to
pilot or active) without an attached validation report (``radpilot validate``).

Two modes (``RADPILOT_GOVERNANCE``):

``embedded`` (the default, and what ``make demo`` and ``radpilot models set-state`` use)
    an administrator makes any transition directly (retired stays final); it is audited
    as an unapproved admin action (the ``model.state`` entry's reason says so);
``governed``
    a transition is requested with a reason by a governance member or an administrator,
    and carried out once it has the approvals :data:`POLICY` names — for ``active`` two
    governance members — from people other than the requester. One "no" rejects it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from radpilot.core.errors import RadpilotError
from radpilot.core.settings import Settings
from radpilot.governance.audit import AuditLog
from radpilot.governance.challenger import compare_with_champion
from radpilot.models.registry import Registry
from radpilot.store import Database
from radpilot.store.models import utcnow
from radpilot.store.models_governance import Approval, Transition, TransitionStatus
from radpilot.store.models_pipeline import ModelState, ModelVersion
from radpilot.store.models_users import Role
from radpilot.store.models_validation import ValidationReportRecord

__all__ = [
    "ALLOWED",
    "POLICY",
    "LifecycleError",
    "Need",
    "TransitionRefusedError",
    "approve",
    "direct_transition",
    "request_transition",
]

S = ModelState
#: The transitions that exist; anything else skips a state or leaves a final one.
ALLOWED: dict[ModelState, frozenset[ModelState]] = {
    S.REGISTERED: frozenset({S.SHADOW, S.RETIRED}),
    S.SHADOW: frozenset({S.PILOT, S.SUSPENDED, S.RETIRED}),
    S.PILOT: frozenset({S.ACTIVE, S.SHADOW, S.SUSPENDED, S.RETIRED}),
    S.ACTIVE: frozenset({S.SUSPENDED, S.RETIRED}),
    S.SUSPENDED: frozenset({S.SHADOW, S.PILOT, S.ACTIVE, S.RETIRED}),
    S.RETIRED: frozenset(),
}
#: Leaving shadow towards these needs a validation report of the version.
NEEDS_REPORT = frozenset({S.PILOT, S.ACTIVE})


@dataclass(frozen=True)
class Need:
    """Approvals a target state needs: ``count`` distinct people holding one of ``roles``."""

    roles: frozenset[Role]
    count: int


#: Governed mode: approvals per target state. Suspension takes effect at once (it is the
#: safety action); everything else needs someone besides the requester.
POLICY: dict[ModelState, Need] = {
    S.SHADOW: Need(frozenset({Role.GOVERNANCE, Role.ADMIN}), 1),
    S.PILOT: Need(frozenset({Role.GOVERNANCE}), 1),
    S.ACTIVE: Need(frozenset({Role.GOVERNANCE}), 2),
    S.RETIRED: Need(frozenset({Role.GOVERNANCE}), 1),
    S.SUSPENDED: Need(frozenset({Role.GOVERNANCE, Role.ADMIN}), 0),
}
REQUESTERS = frozenset({Role.GOVERNANCE, Role.ADMIN})


class LifecycleError(RadpilotError):
    """A lifecycle action that cannot be done (``status`` says which HTTP answer fits)."""

    status = 409


class TransitionRefusedError(LifecycleError):
    """A transition refused by the rules (skipped state, no report, mode)."""


class NotAllowedError(LifecycleError):
    """The actor's role may not do this."""

    status = 403


def _version(session: Session, name: str, version: str) -> ModelVersion:
    row = session.scalars(
        select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
    ).first()
    if row is None:
        error = LifecycleError(f"no model {name}:{version}; `radpilot models list` shows them")
        error.status = 404
        raise error
    return row


def _check_rules(session: Session, row: ModelVersion, target: ModelState) -> None:
    if target not in ALLOWED[row.state]:
        allowed = ", ".join(sorted(s.value for s in ALLOWED[row.state])) or "none (final)"
        raise TransitionRefusedError(
            f"{row.label} is {row.state.value}; {row.state.value} -> {target.value} is not a "
            f"transition (from {row.state.value}: {allowed})"
        )
    if row.state in (S.SHADOW, S.SUSPENDED) and target in NEEDS_REPORT:
        reports = session.scalar(
            select(func.count(ValidationReportRecord.id)).where(
                ValidationReportRecord.model_version_pk == row.id
            )
        )
        if not reports:
            raise TransitionRefusedError(
                f"{row.label} has no validation report; attach one with `radpilot validate "
                f"--model {row.name}:{row.version}` before it leaves {row.state.value}"
            )


def _refused(db: Database, actor: str, label: str, target: str, error: LifecycleError) -> None:
    AuditLog(db).append(
        "model.transition.refused", actor, label, {"to": target, "reason": str(error)}
    )


def direct_transition(
    db: Database,
    settings: Settings,
    name: str,
    version: str,
    target: ModelState,
    *,
    actor: str,
    role: Role,
    reason: str,
) -> ModelVersion:
    """Embedded mode: an administrator's transition, done at once and audited as such.

    Raises
    ------
    LifecycleError
        In governed mode, for a role other than admin, or when the rules refuse it
        (each refusal is audited).
    """
    label = f"{name}:{version}"
    try:
        if settings.governance == "governed":
            raise TransitionRefusedError(
                "this installation is governed: request the transition and have it approved "
                "(POST /api/governance/models/{name}/{version}/transitions)"
            )
        if role is not Role.ADMIN:
            raise NotAllowedError("a direct transition needs the admin role")
        with db.session() as session:
            _version(session, name, version)
    except LifecycleError as exc:
        _refused(db, actor, label, target.value, exc)
        raise
    registry = Registry(db, settings.models_dir)
    return registry.set_state(
        name,
        version,
        target,
        actor=actor,
        reason=reason,
        approval="none (embedded default: an administrator's direct action)",
    )


def request_transition(
    db: Database,
    settings: Settings,
    name: str,
    version: str,
    target: ModelState,
    *,
    actor: str,
    role: Role,
    reason: str,
) -> Transition:
    """Governed mode: record a request (carried out at once when no approval is needed).

    Raises
    ------
    LifecycleError
        When the rules refuse it, the role may not request, or one is already pending.
    """
    label = f"{name}:{version}"
    try:
        if role not in REQUESTERS:
            raise NotAllowedError(
                "requesting a model transition needs the governance or admin role"
            )
        if not reason.strip():
            raise TransitionRefusedError("a transition needs a reason")
        with db.session() as session:
            row = _version(session, name, version)
            _check_rules(session, row, target)
            pending = session.scalar(
                select(func.count(Transition.id)).where(
                    Transition.model_version_pk == row.id,
                    Transition.status == TransitionStatus.PENDING,
                )
            )
            if pending:
                raise TransitionRefusedError(
                    f"{label} has a pending transition; approve or reject it first"
                )
            comparison = (
                compare_with_champion(session, row)
                if row.state in (S.SHADOW, S.SUSPENDED) and target in NEEDS_REPORT
                else None
            )
            request = Transition(
                comparison=comparison,
                model_version_pk=row.id,
                from_state=row.state,
                to_state=target,
                reason=reason,
                requested_by=actor,
            )
            session.add(request)
            session.flush()
            AuditLog(db).append(
                "model.transition.requested",
                actor,
                label,
                {
                    "transition": request.id,
                    "from": row.state.value,
                    "to": target.value,
                    "reason": reason,
                    "comparison": comparison,
                },
                session=session,
            )
            session.commit()
            transition_id = request.id
    except LifecycleError as exc:
        _refused(db, actor, label, target.value, exc)
        raise
    if POLICY[target].count == 0:
        return _apply(db, settings, transition_id, actor)
    with db.session() as session:
        found = session.get(Transition, transition_id)
        assert found is not None
        return found


def approve(
    db: Database,
    settings: Settings,
    transition_id: int,
    *,
    actor: str,
    role: Role,
    approved: bool = True,
    comment: str | None = None,
) -> Transition:
    """One person's approval (or rejection); the transition is carried out when the
    policy's count is reached.

    Raises
    ------
    LifecycleError
        For an unknown or decided transition, the requester approving their own request,
        a second vote by the same person, or a role the policy does not name (403).
    """
    with db.session() as session:
        request = session.get(Transition, transition_id)
        if request is None:
            error = LifecycleError(f"no transition {transition_id}")
            error.status = 404
            raise error
        label = request.model_version.label
        need = POLICY[request.to_state]
        try:
            if request.status is not TransitionStatus.PENDING:
                raise TransitionRefusedError(
                    f"transition {transition_id} is {request.status.value}"
                )
            if role not in need.roles:
                names = " or ".join(sorted(r.value for r in need.roles))
                raise NotAllowedError(
                    f"approving -> {request.to_state.value} needs the role {names}"
                )
            if actor == request.requested_by:
                raise TransitionRefusedError("the requester cannot approve their own request")
            if any(a.approver == actor for a in request.approvals):
                raise TransitionRefusedError(f"{actor} has already decided on this transition")
        except LifecycleError as exc:
            _refused(db, actor, label, request.to_state.value, exc)
            raise
        session.add(
            Approval(
                transition_pk=request.id,
                approver=actor,
                role=role.value,
                approved=approved,
                comment=comment,
            )
        )
        AuditLog(db).append(
            "model.transition.approved" if approved else "model.transition.rejected",
            actor,
            label,
            {
                "transition": request.id,
                "to": request.to_state.value,
                "role": role.value,
                "comment": comment,
            },
            session=session,
        )
        if not approved:
            request.status = TransitionStatus.REJECTED
            request.decided_at = utcnow()
        session.commit()
        yes = sum(1 for a in request.approvals if a.approved) + (1 if approved else 0)
        ready = approved and yes >= need.count
    if ready:
        return _apply(db, settings, transition_id, actor)
    with db.session() as session:
        found = session.get(Transition, transition_id)
        assert found is not None
        return found


def _apply(db: Database, settings: Settings, transition_id: int, actor: str) -> Transition:
    with db.session() as session:
        request = session.get(Transition, transition_id)
        assert request is not None
        row = request.model_version
        if row.state is not request.from_state:
            raise TransitionRefusedError(
                f"{row.label} moved to {row.state.value} since the request; request again"
            )
        names = sorted(a.approver for a in request.approvals if a.approved)
        name, version, target = row.name, row.version, request.to_state
        by = ", ".join(names) or "no one (none needed)"
        reason, approval = request.reason, f"transition {request.id}, approved by {by}"
    Registry(db, settings.models_dir).set_state(
        name, version, target, actor=actor, reason=reason, approval=approval
    )
    with db.session() as session:
        request = session.get(Transition, transition_id)
        assert request is not None
        request.status = TransitionStatus.APPLIED
        request.decided_at = utcnow()
        session.commit()
        return request
