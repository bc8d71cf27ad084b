"""The pages a radiologist, an administrator and the governance group open.

Page URLs carry database ids only, never a patient identifier or a UID. The pages are
shells: their scripts fetch the data from the same API machine clients use
(``/api/worklist``, ``/api/studies/{id}``, ``/api/viewer/...``), so that a decision made
in the browser goes through exactly the route, checks and audit entry of the API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from radpilot.pipeline.worklist import find_study
from radpilot.store.models_users import Role
from radpilot.web.deps import Actor, CurrentActor, DbDep, SettingsDep, require_roles
from radpilot.web.pages import render

__all__ = ["REASON_CODES", "router"]

router = APIRouter(include_in_schema=False)

#: The reason codes the decision panel offers, per decision (docs/web.md).
REASON_CODES: dict[str, list[tuple[str, str]]] = {
    "accept": [("agree", "Agree with the AI result"), ("agree_minor", "Agree, minor remarks")],
    "modify": [
        ("wrong_label", "Finding present, different label"),
        ("wrong_measurement", "Measurement corrected"),
        ("wrong_location", "Right finding, wrong location"),
    ],
    "reject": [
        ("false_positive", "False positive"),
        ("false_negative", "Missed finding (false negative)"),
        ("artifact", "Image artifact / poor quality"),
        ("not_applicable", "Study outside the model's intended use"),
    ],
}


@router.get("/")
def home() -> RedirectResponse:
    """The worklist is the start page."""
    return RedirectResponse("/worklist", status_code=303)


@router.get("/worklist", response_class=HTMLResponse)
def worklist_page(request: Request, actor: CurrentActor, settings: SettingsDep) -> HTMLResponse:
    """Studies by AI priority, updated live."""
    return render(
        request,
        "worklist.html",
        {"actor": actor, "patient_names": settings.worklist_patient_names},
    )


@router.get("/studies/{study_id}", response_class=HTMLResponse)
def study_page(request: Request, actor: CurrentActor, db: DbDep, study_id: int) -> HTMLResponse:
    """One study: the viewer with AI overlays and the decision panel."""
    with db.session() as session:
        study = find_study(session, study_id)  # 404 page when there is none
    return render(
        request,
        "study.html",
        {
            "actor": actor,
            "study_id": study.id,
            "can_decide": actor.role is Role.RADIOLOGIST,
            "reason_codes": REASON_CODES,
        },
    )


@router.get("/admin", response_class=HTMLResponse)
def admin_page(
    request: Request, actor: Annotated[Actor, Depends(require_roles(Role.ADMIN))]
) -> HTMLResponse:
    """Users and their roles (administrators only)."""
    return render(request, "admin.html", {"actor": actor, "roles": [r.value for r in Role]})


@router.get("/governance", response_class=HTMLResponse)
def governance_page(
    request: Request,
    actor: Annotated[Actor, Depends(require_roles(Role.GOVERNANCE, Role.ADMIN))],
) -> HTMLResponse:
    """The audit trail and its verification (governance and administrators)."""
    return render(request, "governance.html", {"actor": actor})
