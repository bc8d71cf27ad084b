"""``GET /api/events``: server-sent events that tell open worklists to refresh.

Jobs may run in another process (Celery workers, a second ``radpilot serve``), so the
stream does not listen to in-process events: it looks at the database every
``RADPILOT_EVENTS_POLL_SECONDS`` and sends a ``worklist`` event when anything the
worklist shows has changed — a study completed, a job moved on, a result stored, a
decision recorded. The event carries counters only, never a patient identifier; the page
then fetches ``/api/worklist`` again and keeps the reader's place. A comment line every
15 seconds keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from radpilot.store import Database
from radpilot.store.models import Study
from radpilot.store.models_pipeline import Feedback, Job, Result
from radpilot.web.deps import DbDep, SettingsDep, current_actor

__all__ = ["changes", "router"]

router = APIRouter(prefix="/api", tags=["worklist"], dependencies=[Depends(current_actor)])

_KEEPALIVE_SECONDS = 15.0


def changes(db: Database) -> dict[str, Any]:
    """Counters that change whenever the worklist would (one query)."""
    query = select(
        select(func.count(Study.id)).where(Study.completed_at.is_not(None)).scalar_subquery(),
        select(func.coalesce(func.max(Job.id), 0)).scalar_subquery(),
        select(func.count(Job.id)).where(Job.finished_at.is_not(None)).scalar_subquery(),
        select(func.coalesce(func.max(Result.id), 0)).where(Result.visible).scalar_subquery(),
        select(func.coalesce(func.max(Feedback.id), 0)).scalar_subquery(),
    )
    with db.session() as session:
        completed, jobs, finished, results, feedback = session.execute(query).one()
    return {
        "completed_studies": int(completed),
        "last_job": int(jobs),
        "finished_jobs": int(finished),
        "last_result": int(results),
        "last_feedback": int(feedback),
    }


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(request: Request, db: DbDep, settings: SettingsDep) -> StreamingResponse:
    """A ``text/event-stream`` of ``worklist`` events (the first one at once)."""
    closing = request.app.state.closing

    async def stream() -> AsyncIterator[str]:
        last: dict[str, Any] | None = None
        quiet_since = time.monotonic()
        yield "retry: 3000\n\n"
        while not closing.is_set() and not await request.is_disconnected():
            now = await run_in_threadpool(changes, db)
            if now != last:
                yield f"event: worklist\ndata: {json.dumps(now)}\n\n"
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= _KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            await asyncio.sleep(settings.events_poll_seconds)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
