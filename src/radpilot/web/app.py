"""The FastAPI application: ``create_app(settings, db)``; ``radpilot.web.server`` runs it.

Errors become precise HTTP answers, never a dead server (as pynetdicom turns a failing
handler into a DIMSE status): not signed in 401, wrong role or CSRF token 403, unknown
study 404, body too large 413, invalid body 422, result of another study 409, too many
sign-in failures 429, database unreachable 503, anything else 500, each with JSON
``{"detail": ...}`` (422 answers use FastAPI's list of ``{loc, msg, type}``). A browser
asking for a page gets the same status as an HTML page instead, and a page that needs
sign-in redirects to ``/signin``.

Nothing here logs a URL, a query string or a body: study UIDs, accession numbers and
free text travel in them. The request log names the route *template* instead
(``/api/studies/{study_id}``); uvicorn's access log must stay off (``web.server`` does).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request, Response, status
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from radpilot import __version__
from radpilot.core.errors import RadpilotError
from radpilot.core.settings import Settings
from radpilot.pipeline.feedback import InvalidFeedbackError, ResultMismatchError
from radpilot.pipeline.worklist import StudyNotFoundError
from radpilot.store import Database
from radpilot.web import (
    routes_admin,
    routes_alerts,
    routes_auth,
    routes_dashboard,
    routes_dicomweb,
    routes_events,
    routes_lifecycle,
    routes_pages,
    routes_studies,
    routes_subgroups,
    routes_viewer,
    routes_worklist,
)
from radpilot.web.deps import current_actor
from radpilot.web.middleware import BodyLimit, SecurityHeaders
from radpilot.web.pages import STATIC_DIR, render
from radpilot.web.ratelimit import SignInLimiter
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


def _wants_page(request: Request) -> bool:
    path = request.url.path
    return (
        request.method == "GET"
        and not path.startswith(("/api", "/dicomweb", "/static"))
        and "text/html" in request.headers.get("accept", "")
    )


def _install_handlers(app: FastAPI) -> None:
    def error(code: int, detail: str, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse(status_code=code, content={"detail": detail}, headers=headers)

    def answer(request: Request, code: int, detail: str, headers: Any = None) -> Response:
        if not _wants_page(request):
            return error(code, detail, headers)
        if code == status.HTTP_401_UNAUTHORIZED:
            expired = "&expired=1" if "expired" in detail else ""
            target = quote(request.url.path, safe="/")
            return RedirectResponse(f"/signin?next={target}{expired}", status_code=303)
        return render(request, "error.html", {"code": code, "detail": detail}, status_code=code)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return answer(request, exc.status_code, str(exc.detail), exc.headers)

    async def not_found(request: Request, exc: Exception) -> Response:
        return answer(request, status.HTTP_404_NOT_FOUND, str(exc))

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        field = exc.field if isinstance(exc, InvalidFeedbackError) else "body"
        message = exc.message if isinstance(exc, InvalidFeedbackError) else str(exc)
        return JSONResponse(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            content={"detail": [{"loc": ["body", field], "msg": message, "type": "value_error"}]},
        )

    async def conflict(_request: Request, exc: Exception) -> Response:
        return error(status.HTTP_409_CONFLICT, str(exc))

    async def database_down(request: Request, exc: Exception) -> Response:
        # The exception's text holds the SQL parameters (UIDs, accession numbers): not logged.
        log.warning("database unavailable (%s) in %s", type(exc).__name__, _template(request))
        return error(status.HTTP_503_SERVICE_UNAVAILABLE, DATABASE_DOWN)

    async def radpilot_error(request: Request, exc: Exception) -> Response:
        log.error("%s in %s", type(exc).__name__, _template(request))
        return error(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc))

    async def unexpected(request: Request, exc: Exception) -> Response:
        frames = "".join(traceback.format_tb(exc.__traceback__))  # code lines, no values
        log.error("unexpected %s in %s\n%s", type(exc).__name__, _template(request), frames)
        return error(
            status.HTTP_500_INTERNAL_SERVER_ERROR,
            f"internal error ({type(exc).__name__}); the server log has the details",
        )

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(StudyNotFoundError, not_found)
    app.add_exception_handler(InvalidFeedbackError, invalid)
    app.add_exception_handler(ResultMismatchError, conflict)
    for db_error in (OperationalError, InterfaceError, PoolTimeoutError):
        app.add_exception_handler(db_error, database_down)
    app.add_exception_handler(RadpilotError, radpilot_error)
    app.add_exception_handler(Exception, unexpected)


def create_app(settings: Settings, db: Database) -> FastAPI:
    """The web app and API for one installation; ``db`` must be migrated (the caller
    owns it).

    Pages: ``/signin``, ``/worklist``, ``/studies/{id}``, ``/admin``, ``/governance``.
    API: ``/api/health`` (no sign-in), ``/api/me``, ``/api/worklist``, ``/api/events``,
    ``/api/studies/{id}`` (+ ``/feedback``, ``/report``, ``/report.json``),
    ``/api/viewer/...``, ``/api/admin/...``, ``/api/governance/...``; DICOMweb under
    ``/dicomweb``; the OpenAPI description at ``/api/openapi.json`` (signed in).
    """
    app = FastAPI(
        title="radpilot",
        version=__version__,
        description="Worklist, viewer and feedback API (docs/api.md, docs/web.md).",
        docs_url=None,  # Swagger UI loads from a CDN, which a hospital network may not reach
        openapi_url=None,  # served below, behind sign-in
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.closing = threading.Event()  # set when the server stops (ends event streams)
    app.state.signin_limiter = SignInLimiter(
        settings.signin_max_failures, settings.signin_window_seconds
    )
    _install_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    app.add_middleware(SecurityHeaders)

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

    @app.get("/api/openapi.json", include_in_schema=False, dependencies=[Depends(current_actor)])
    def openapi() -> JSONResponse:
        """The OpenAPI description of this API."""
        return JSONResponse(app.openapi())

    for router in (
        routes_auth.router,
        routes_pages.router,
        routes_worklist.router,
        routes_events.router,
        routes_studies.router,
        routes_viewer.router,
        routes_admin.admin,
        routes_admin.governance,
        routes_lifecycle.router,
        routes_alerts.router,
        routes_dashboard.router,
        routes_subgroups.router,
        routes_lifecycle.admin_router,
        routes_dicomweb.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
