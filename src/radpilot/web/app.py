"""The FastAPI application: ``create_app(settings, db)``; ``radpilot.web.server`` runs it.

Errors become precise HTTP answers, never a dead server (as pynetdicom turns a failing
handler into a DIMSE status): unknown study 404, invalid body 422, result of another
study 409, database unreachable 503, anything else 500, each with JSON ``{"detail": ...}``
(422 answers use FastAPI's list of ``{loc, msg, type}``).

Nothing here logs a URL, a query string or a body: study UIDs, accession numbers and
free text travel in them. The request log names the route *template* instead
(``/api/studies/{study_id}``); uvicorn's access log must stay off (``web.server`` does).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from radpilot import __version__
from radpilot.core.errors import RadpilotError
from radpilot.core.settings import Settings
from radpilot.pipeline.feedback import InvalidFeedbackError, ResultMismatchError
from radpilot.pipeline.worklist import StudyNotFoundError
from radpilot.store import Database
from radpilot.web import routes_dicomweb, routes_studies, routes_worklist
from radpilot.web.schemas import ErrorOut, HealthOut

__all__ = ["create_app"]

log = logging.getLogger(__name__)

DATABASE_DOWN = (
    "the database is unavailable; try again shortly (an administrator should check "
    "RADPILOT_DATABASE_URL and the database server)"
)


def _template(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", "(no route)"))


def _install_handlers(app: FastAPI) -> None:
    def error(code: int, detail: str) -> JSONResponse:
        return JSONResponse(status_code=code, content={"detail": detail})

    async def not_found(_request: Request, exc: Exception) -> JSONResponse:
        return error(status.HTTP_404_NOT_FOUND, str(exc))

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        field = exc.field if isinstance(exc, InvalidFeedbackError) else "body"
        message = exc.message if isinstance(exc, InvalidFeedbackError) else str(exc)
        return JSONResponse(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            content={"detail": [{"loc": ["body", field], "msg": message, "type": "value_error"}]},
        )

    async def conflict(_request: Request, exc: Exception) -> JSONResponse:
        return error(status.HTTP_409_CONFLICT, str(exc))

    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        # The exception's text holds the SQL parameters (UIDs, accession numbers): not logged.
        log.warning("database unavailable (%s) in %s", type(exc).__name__, _template(request))
        return error(status.HTTP_503_SERVICE_UNAVAILABLE, DATABASE_DOWN)

    async def radpilot_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s in %s", type(exc).__name__, _template(request))
        return error(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        frames = "".join(traceback.format_tb(exc.__traceback__))  # code lines, no values
        log.error("unexpected %s in %s\n%s", type(exc).__name__, _template(request), frames)
        return error(
            status.HTTP_500_INTERNAL_SERVER_ERROR,
            f"internal error ({type(exc).__name__}); the server log has the details",
        )

    app.add_exception_handler(StudyNotFoundError, not_found)
    app.add_exception_handler(InvalidFeedbackError, invalid)
    app.add_exception_handler(ResultMismatchError, conflict)
    for db_error in (OperationalError, InterfaceError, PoolTimeoutError):
        app.add_exception_handler(db_error, database_down)
    app.add_exception_handler(RadpilotError, radpilot_error)
    app.add_exception_handler(Exception, unexpected)


def create_app(settings: Settings, db: Database) -> FastAPI:
    """The API for one installation; ``db`` must be migrated (the caller owns it).

    Routes: ``GET /api/health`` (no authentication), ``GET /api/worklist``,
    ``GET /api/studies/{id}``, ``POST /api/studies/{id}/feedback``,
    ``GET /api/studies/{id}/report`` and ``.../report.json``; OpenAPI at ``/api/docs``.
    """
    app = FastAPI(
        title="radpilot",
        version=__version__,
        description="Worklist and feedback API (docs/api.md).",
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    _install_handlers(app)

    @app.middleware("http")
    async def request_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        log.debug(
            "%s %s %d %.1f ms",
            request.method,
            _template(request),
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response

    @app.get(
        "/api/health",
        tags=["health"],
        response_model=HealthOut,
        responses={503: {"model": ErrorOut}},
    )
    def health() -> Response:
        """Whether the API and its database answer; needs no authentication."""
        try:
            with db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except (OperationalError, InterfaceError, PoolTimeoutError) as exc:
            log.warning("health: database unavailable (%s)", type(exc).__name__)
            return JSONResponse(
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                content={"detail": DATABASE_DOWN},
            )
        body = HealthOut(status="ok", database="ok", version=__version__)
        return JSONResponse(body.model_dump())

    app.include_router(routes_worklist.router)
    app.include_router(routes_studies.router)
    app.include_router(routes_dicomweb.router)
    return app
