"""Dependencies shared by the routes: the database, the settings and who is asking.

Authentication is one function, :func:`authenticate`. For now it knows two kinds of
caller:

* a reader with a bearer token (``Authorization: Bearer <token>``) from
  ``RADPILOT_API_TOKENS`` (a JSON object ``{"reader id": "token"}``);
* when ``RADPILOT_API_OPEN=true`` only, a caller without a token, who becomes
  :data:`ANONYMOUS` (a single-user installation on the reader's own machine).

A wrong token is refused even on an open API. The web-app issue (logins, sessions, roles)
replaces :func:`authenticate` (or overrides :func:`current_actor` with
``app.dependency_overrides``); routes only ever see an :class:`Actor`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from radpilot.core.settings import Settings
from radpilot.store import Database

__all__ = [
    "ANONYMOUS",
    "Actor",
    "CurrentActor",
    "DbDep",
    "SettingsDep",
    "authenticate",
    "current_actor",
    "get_db",
    "get_settings",
]


@dataclass(frozen=True)
class Actor:
    """Who is calling: ``id`` goes into the audit log; ``authenticated`` is false only
    for the anonymous caller of an open API."""

    id: str
    authenticated: bool


#: The caller without a token on an API that ``api_open`` opens.
ANONYMOUS = Actor(id="anonymous", authenticated=False)

_bearer = HTTPBearer(
    auto_error=False,
    description="A reader's token from RADPILOT_API_TOKENS (docs/api.md).",
)


def get_settings(request: Request) -> Settings:
    """The settings :func:`radpilot.web.app.create_app` was given."""
    settings: Settings = request.app.state.settings
    return settings


def get_db(request: Request) -> Database:
    """The database :func:`radpilot.web.app.create_app` was given."""
    db: Database = request.app.state.db
    return db


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[Database, Depends(get_db)]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=message,
        headers={"WWW-Authenticate": "Bearer"},
    )


def authenticate(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> Actor:
    """The actor a request acts as; the one function the web-app issue replaces.

    Raises
    ------
    fastapi.HTTPException
        401 when the token is unknown, or when there is none and the API is not open.
    """
    if credentials is None:
        if settings.api_open:
            return ANONYMOUS
        raise _unauthorized(
            "this API needs 'Authorization: Bearer <token>' with a token from "
            "RADPILOT_API_TOKENS (or RADPILOT_API_OPEN=true on a single-user installation)"
        )
    offered = credentials.credentials.encode("utf-8")
    match: str | None = None
    for reader, token in settings.api_tokens.items():
        # Compare with every token, in constant time, so timing tells nothing.
        if hmac.compare_digest(offered, token.get_secret_value().encode("utf-8")):
            match = reader
    if match is None:
        raise _unauthorized("unknown token; ask an administrator for yours (RADPILOT_API_TOKENS)")
    return Actor(id=match, authenticated=True)


def current_actor(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """FastAPI dependency: the :class:`Actor` of this request (see :func:`authenticate`).

    Raises
    ------
    fastapi.HTTPException
        401, as :func:`authenticate` decides, or when the ``Authorization`` header is
        not a bearer token.
    """
    if credentials is None and request.headers.get("authorization"):
        raise _unauthorized("only 'Authorization: Bearer <token>' is accepted")
    return authenticate(settings, credentials)


CurrentActor = Annotated[Actor, Depends(current_actor)]
