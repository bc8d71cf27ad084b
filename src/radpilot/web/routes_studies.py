"""One study: its detail, a reader's decision on it, and its reports (text and FHIR).

``{study_id}`` is the numeric id or the Study Instance UID. Results of shadow models are
never shown, never decided on and never reported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response, status
from fastapi.responses import PlainTextResponse
from sqlalchemy import select

from radpilot.core.errors import StorageError
from radpilot.core.settings import Settings
from radpilot.pipeline.feedback import record_feedback
from radpilot.pipeline.worklist import find_study, study_detail
from radpilot.store import Database
from radpilot.store.models_pipeline import Result, ResultObject
from radpilot.store.models_users import Role
from radpilot.web.deps import Actor, DbDep, SettingsDep, current_actor, require_roles
from radpilot.web.schemas import ErrorOut, FeedbackIn, RecordedFeedbackOut, StudyOut

__all__ = ["FHIR_JSON", "router"]

FHIR_JSON = "application/fhir+json"

Radiologist = Annotated[Actor, Depends(require_roles(Role.RADIOLOGIST))]

router = APIRouter(
    prefix="/api/studies",
    tags=["studies"],
    dependencies=[Depends(current_actor)],
    responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}, 503: {"model": ErrorOut}},
)


@router.get("/{study_id}", response_model=StudyOut)
def get_study(db: DbDep, settings: SettingsDep, study_id: str) -> StudyOut:
    """The study's worklist fields, its visible results in full, its series and decisions."""
    with db.session() as session:
        detail = study_detail(session, study_id)
    fields = {f.name: getattr(detail.row, f.name) for f in dataclasses.fields(detail.row)}
    if not settings.worklist_patient_names:
        fields["patient_name"] = None
    return StudyOut.model_validate({**fields, "series": detail.series, "feedback": detail.feedback})


@router.post(
    "/{study_id}/feedback",
    status_code=status.HTTP_201_CREATED,
    response_model=RecordedFeedbackOut,
    responses={403: {"model": ErrorOut}, 409: {"model": ErrorOut}},
)
def post_feedback(
    db: DbDep, actor: Radiologist, study_id: str, body: FeedbackIn
) -> RecordedFeedbackOut:
    """Record a radiologist's decision (accept, modify, reject) on one AI result; audited.

    The reader is the signed-in user (or the token's); ``reader`` in the body may be left
    out and, when given, must be that same id.
    """
    if body.reader is not None and body.reader != actor.id:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail="a reader records only their own decisions; leave 'reader' out "
            "or send your own user name",
        )
    reader = actor.id
    recorded = record_feedback(db, study_id, body.to_request(reader), actor=actor.id)
    fields = dataclasses.asdict(recorded.feedback)
    return RecordedFeedbackOut.model_validate(
        {
            **fields,
            "study_instance_uid": recorded.study_instance_uid,
            "model_name": recorded.model_name,
            "model_version": recorded.model_version,
            "audit_seq": recorded.audit_seq,
        }
    )


def _report_files(db: Database, settings: Settings, study_id: str, kind: str) -> list[bytes]:
    """The contents of the study's visible result objects of ``kind``, in result order.

    Raises
    ------
    HTTPException
        404 when there is none (not written yet, or only shadow results have one).
    StorageError
        When a file's content no longer matches the checksum recorded when it was written.
    """
    with db.session() as session:
        study = find_study(session, study_id)
        objects = session.execute(
            select(ResultObject.path, ResultObject.sha256)
            .join(Result, ResultObject.result_pk == Result.id)
            .where(
                Result.study_pk == study.id,
                Result.visible.is_(True),
                ResultObject.kind == kind,
            )
            .order_by(Result.id, ResultObject.name)
        ).all()
    root = Path(settings.data_dir).resolve()
    contents = []
    for relative, sha256 in objects:
        path = (root / relative).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            continue
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StorageError(
                "a stored report no longer matches the checksum recorded when it was written; "
                "an administrator should check the data directory (radpilot audit verify)"
            )
        contents.append(data)
    if not contents:
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND,
            detail=f"no {'FHIR' if kind == 'fhir' else 'text'} report for this study "
            "(no visible AI result has one yet)",
        )
    return contents


@router.get("/{study_id}/report", response_class=PlainTextResponse)
def get_report_text(db: DbDep, settings: SettingsDep, study_id: str) -> PlainTextResponse:
    """The plain-text report(s) of the study's AI results, one after the other."""
    parts = [
        p.decode("utf-8", "replace").strip() for p in _report_files(db, settings, study_id, "text")
    ]
    return PlainTextResponse("\n\n".join(parts) + "\n")


@router.get(
    "/{study_id}/report.json",
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}},
)
def get_report_fhir(db: DbDep, settings: SettingsDep, study_id: str) -> Response:
    """The FHIR DiagnosticReport of the study's AI result; a FHIR Bundle (collection)
    when several results have one."""
    files = _report_files(db, settings, study_id, "fhir")
    if len(files) == 1:
        return Response(files[0], media_type=FHIR_JSON)
    resources: list[Any] = [json.loads(f) for f in files]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }
    return Response(json.dumps(bundle, ensure_ascii=False), media_type=FHIR_JSON)
