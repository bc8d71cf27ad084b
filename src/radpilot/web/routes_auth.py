"""Sign-in and sign-out: ``GET/POST /signin``, ``POST /signout``, ``GET /api/me``.

The sign-in form is protected against login CSRF by a double-submit token: ``GET
/signin`` sets a random ``radpilot_signin`` cookie and puts the same value in the form;
``POST /signin`` accepts only when both are there and equal. Failures are limited per
user name and per client address (:class:`radpilot.web.ratelimit.SignInLimiter`): over
the limit the answer is 429 with ``Retry-After``, whatever the password.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel

from radpilot.web import accounts
from radpilot.web.deps import SESSION_COOKIE, CurrentActor, DbDep, SettingsDep
from radpilot.web.pages import render, safe_next

__all__ = ["SIGNIN_COOKIE", "MeOut", "cookie_secure", "router"]

log = logging.getLogger(__name__)

SIGNIN_COOKIE = "radpilot_signin"

router = APIRouter(tags=["sign-in"])


class MeOut(BaseModel):
    """``GET /api/me``: who is signed in."""

    username: str
    role: str
    via: str


def cookie_secure(request: Request, setting: str) -> bool:
    """Whether cookies get the Secure flag: always, never, or when the request is https."""
    if setting == "auto":
        return request.url.scheme == "https"
    return setting == "always"


def _form(
    request: Request,
    code: int = status.HTTP_200_OK,
    error: str | None = None,
    username: str = "",
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "signin.html",
        {
            "csrf_token": token,
            "error": error,
            "username": username,
            "next": safe_next(request.query_params.get("next")),
            "expired": request.query_params.get("expired") == "1",
        },
        status_code=code,
        headers=headers,
    )
    settings = request.app.state.settings
    response.set_cookie(
        SIGNIN_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=cookie_secure(request, settings.session_cookie_secure),
        path="/signin",
    )
    return response


@router.get("/signin", response_class=HTMLResponse, include_in_schema=False)
def signin_page(request: Request) -> HTMLResponse:
    """The sign-in form (the one page without sign-in)."""
    return _form(request)


@router.post("/signin", include_in_schema=False)
def signin(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next_page: Annotated[str, Form(alias="next", max_length=512)] = "/worklist",
) -> Response:
    """Check the password; on success start a session and go to ``next``.

    401 for a wrong name or password (the same answer for both), 403 without the form's
    CSRF token, 429 when too many attempts failed recently.
    """
    cookie = request.cookies.get(SIGNIN_COOKIE, "")
    if not csrf_token or not cookie or not hmac.compare_digest(csrf_token, cookie):
        return _form(
            request,
            status.HTTP_403_FORBIDDEN,
            "The form expired or was not sent by this page (missing CSRF token); "
            "please sign in again.",
            username,
        )
    limiter = request.app.state.signin_limiter
    client = request.client.host if request.client else "unknown"
    keys = [f"user:{username.lower()}", f"client:{client}"]
    wait = limiter.retry_after(keys)
    if wait is not None:
        log.warning("sign-in refused: too many failures (user %r)", username[:64])
        return _form(
            request,
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"Too many failed attempts; try again in {wait} seconds.",
            username,
            headers={"Retry-After": str(wait)},
        )
    user = accounts.authenticate_password(db, username, password)
    if user is None:
        limiter.failed(keys)
        log.info("sign-in failed (user %r)", username[:64])
        return _form(
            request, status.HTTP_401_UNAUTHORIZED, "Wrong user name or password.", username
        )
    limiter.succeeded(keys[0])
    opened = accounts.open_session(db, settings, user.username)
    response = RedirectResponse(safe_next(next_page), status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        SESSION_COOKIE,
        opened.token,
        max_age=int(settings.session_max_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request, settings.session_cookie_secure),
        path="/",
    )
    response.delete_cookie(SIGNIN_COOKIE, path="/signin")
    log.info("signed in: %s (%s)", user.username, user.role.value)
    return response


@router.post("/signout", include_in_schema=False)
def signout(request: Request, db: DbDep, actor: CurrentActor) -> Response:
    """End the session (needs the CSRF token like every other change)."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        accounts.close_session(db, token)
    response = RedirectResponse("/signin", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE, path="/")
    log.info("signed out: %s", actor.id)
    return response


@router.get("/api/me", response_model=MeOut, tags=["sign-in"])
def me(actor: CurrentActor) -> MeOut:
    """The signed-in user (or the token's) and their role."""
    return MeOut(username=actor.id, role=actor.role.value, via=actor.via)
