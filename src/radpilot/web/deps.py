"""Dependencies shared by the routes: the database, the settings and who is asking.

Every route except ``/api/health``, the sign-in page and the static files depends on
:func:`current_actor`, which knows three kinds of caller:

* a browser with a session cookie (``radpilot_session``) from ``POST /signin``; requests
  that change something (POST, PUT, PATCH, DELETE) must also carry the session's CSRF
  token in the ``X-CSRF-Token`` header (or the ``csrf_token`` form field);
* a machine client with ``Authorization: Bearer <token>`` issued by ``radpilot users
  token``, acting as that token's user and role;
* a reader with a bearer token from ``RADPILOT_API_TOKENS`` (``{"reader id": "token"}``,
  the configuration-managed tokens), acting as a radiologist.

Bearer requests need no CSRF token: a browser never adds that header by itself. Routes
only ever see an :class:`Actor`; :func:`require_roles` restricts one to some roles.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from radpilot.core.settings import Settings
from radpilot.store import Database
from radpilot.store.models_users import Role
from radpilot.web import accounts

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "Actor",
    "CurrentActor",
    "DbDep",
    "SettingsDep",
    "authenticate_bearer",
    "current_actor",
    "get_db",
    "get_settings",
    "require_roles",
]

SESSION_COOKIE = "radpilot_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Actor:
    """Who is calling: ``id`` (the user name) goes into the audit log."""

    id: str
    role: Role
    via: Literal["session", "token"]
    csrf_token: str | None = None  # sessions only


_bearer = HTTPBearer(
    auto_error=False,
    description="A token from `radpilot users token` or RADPILOT_API_TOKENS (docs/api.md).",
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


def _unauthorized(message: str, scheme: str = "Bearer") -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=message,
        headers={"WWW-Authenticate": scheme},
    )


def authenticate_bearer(settings: Settings, db: Database, token: str) -> Actor:
    """The actor a bearer token stands for.

    Raises
    ------
    fastapi.HTTPException
        401 when no enabled user has this token.
    """
    offered = token.encode("utf-8")
    match: str | None = None
    for reader, known in settings.api_tokens.items():
        # Compare with every configured token, in constant time, so timing tells nothing.
        if hmac.compare_digest(offered, known.get_secret_value().encode("utf-8")):
            match = reader
    if match is not None:
        return Actor(id=match, role=Role.RADIOLOGIST, via="token")
    user = accounts.token_user(db, token)
    if user is None:
        raise _unauthorized("unknown or revoked token; ask an administrator for a new one")
    return Actor(id=user.username, role=user.role, via="token")


async def _csrf_offered(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = await request.form()
        value = form.get("csrf_token")
        return value if isinstance(value, str) else None
    return None


async def current_actor(
    request: Request,
    settings: SettingsDep,
    db: DbDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """FastAPI dependency: the :class:`Actor` of this request.

    Raises
    ------
    fastapi.HTTPException
        401 without a valid session or token (or when the session expired); 403 when a
        session's request that changes something lacks the CSRF token or it is wrong.
    """
    if credentials is not None:
        return authenticate_bearer(settings, db, credentials.credentials)
    if request.headers.get("authorization"):
        raise _unauthorized("only 'Authorization: Bearer <token>' is accepted")
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise _unauthorized("sign in first (POST /signin), or send a bearer token", "Cookie")
    found = accounts.lookup_session(db, settings, cookie)
    if found.status != "ok" or found.username is None or found.role is None:
        reason = "has expired" if found.status == "expired" else "is not valid"
        raise _unauthorized(f"your session {reason}; sign in again", "Cookie")
    actor = Actor(found.username, found.role, "session", found.csrf_token)
    if request.method not in _SAFE_METHODS:
        offered = await _csrf_offered(request)
        if not offered:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"missing CSRF token: send the {CSRF_HEADER} header the page gives",
            )
        if not hmac.compare_digest(offered.encode(), (found.csrf_token or "").encode()):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, "the CSRF token does not match this session"
            )
    return actor


CurrentActor = Annotated[Actor, Depends(current_actor)]


def require_roles(*roles: Role) -> Callable[[Actor], Actor]:
    """A dependency that lets only ``roles`` through (403 for the others)."""
    names = ", ".join(r.value for r in roles)

    def check(actor: CurrentActor) -> Actor:
        if actor.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this needs the role {names}; you are signed in as {actor.role.value}",
            )
        return actor

    return check
