"""``GET /api/worklist``: the studies to read, most urgent first, with their AI results."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from radpilot.pipeline.worklist import AiStatus, WorklistFilter, query_worklist
from radpilot.web.deps import DbDep, SettingsDep, current_actor
from radpilot.web.schemas import ErrorOut, WorklistItem

__all__ = ["router"]

router = APIRouter(
    prefix="/api",
    tags=["worklist"],
    dependencies=[Depends(current_actor)],
    responses={401: {"model": ErrorOut}, 503: {"model": ErrorOut}},
)


@router.get("/worklist", response_model=list[WorklistItem])
def get_worklist(
    db: DbDep,
    settings: SettingsDep,
    response: Response,
    modality: Annotated[
        str | None, Query(max_length=16, description="a modality of the study, e.g. CR")
    ] = None,
    finding: Annotated[
        str | None, Query(max_length=128, description="a finding of a visible AI result")
    ] = None,
    ai_status: Annotated[AiStatus | None, Query(description="where the AI stands")] = None,
    decided: Annotated[
        bool | None, Query(description="true: with a decision; false: without one")
    ] = None,
    q: Annotated[
        str | None,
        Query(max_length=64, description="text in the study description or accession number"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[WorklistItem]:
    """Studies with a visible AI result or complete and waiting, in priority order.

    Critical first, then positive, then by the highest score, then oldest first. The
    number of studies on all pages is in the ``X-Total-Count`` header.
    """
    flt = WorklistFilter(
        modality=modality,
        finding=finding,
        ai_status=ai_status,
        decided=decided,
        text=q,
        limit=limit,
        offset=offset,
    )
    with db.session() as session:
        page = query_worklist(session, flt)
    response.headers["X-Total-Count"] = str(page.total)
    items = [WorklistItem.model_validate(row) for row in page.rows]
    if not settings.worklist_patient_names:
        for item in items:
            item.patient_name = None
    return items
