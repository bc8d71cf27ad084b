"""Local users, sign-in sessions and API tokens: the rules, without HTTP.

Passwords are hashed with argon2 through pwdlib (the library FastAPI's own documentation
now recommends; passlib is unmaintained since 2020). Session and API tokens are 256-bit
random values (:func:`secrets.token_urlsafe`); only their SHA-256 is stored, so a copy of
the database signs nobody in. Every change to a user, and every token issued, is appended
to the audit log. User names are not patient identifiers and may be logged; passwords and
tokens never are.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from pwdlib import PasswordHash
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from radpilot.core.errors import RadpilotError
from radpilot.core.settings import Settings
from radpilot.governance.audit import AuditLog
from radpilot.store import Database
from radpilot.store.models import as_utc, utcnow
from radpilot.store.models_users import ApiToken, Role, User, UserSession

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "AccountError",
    "OpenedSession",
    "SessionLookup",
    "UserRow",
    "add_user",
    "authenticate_password",
    "close_session",
    "issue_token",
    "list_users",
    "lookup_session",
    "open_session",
    "set_disabled",
    "set_password",
    "token_user",
]

MIN_PASSWORD_LENGTH = 10
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_hasher = PasswordHash.recommended()
# Verified against when the user name is unknown, so that the answer takes as long.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
_TOUCH_EVERY = dt.timedelta(seconds=60)  # last_seen_at is written at most this often


class AccountError(RadpilotError):
    """A user cannot be added or changed as asked (the message says why)."""


@dataclass(frozen=True)
class UserRow:
    """A user as lists show it (no hash)."""

    username: str
    display_name: str | None
    role: Role
    disabled: bool
    created_at: dt.datetime
    last_sign_in_at: dt.datetime | None


@dataclass(frozen=True)
class OpenedSession:
    """A new session: ``token`` goes into the cookie, ``csrf_token`` into forms."""

    token: str
    csrf_token: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class SessionLookup:
    """What a session cookie stands for: ``ok`` with its user, or why not."""

    status: Literal["ok", "expired", "unknown"]
    username: str | None = None
    role: Role | None = None
    csrf_token: str | None = None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _row(user: User) -> UserRow:
    return UserRow(
        user.username,
        user.display_name,
        user.role,
        user.disabled,
        user.created_at,
        user.last_sign_in_at,
    )


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")


def _user(session: Session, username: str) -> User:
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise AccountError(f"no user {username!r}; `radpilot users list` shows them")
    return user


def add_user(
    db: Database,
    username: str,
    password: str,
    role: Role,
    *,
    display_name: str | None = None,
    actor: str,
) -> UserRow:
    """Create a user; audited as ``user.add``.

    Raises
    ------
    AccountError
        If the name is taken or not of the form ``[a-z0-9][a-z0-9._-]{1,63}``, or the
        password is shorter than :data:`MIN_PASSWORD_LENGTH`.
    """
    if not _USERNAME.match(username):
        raise AccountError(
            f"user name {username!r} is not valid: 2 to 64 of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    _check_password(password)
    with db.session() as session:
        if session.scalars(select(User.id).where(User.username == username)).first():
            raise AccountError(f"user {username!r} exists already")
        user = User(
            username=username,
            display_name=display_name,
            role=role,
            password_hash=_hasher.hash(password),
            created_by=actor,
        )
        session.add(user)
        session.flush()
        AuditLog(db).append(
            "user.add", actor, f"user:{username}", {"role": role.value}, session=session
        )
        session.commit()
        return _row(user)


def list_users(db: Database) -> list[UserRow]:
    """Every user, by name."""
    with db.session() as session:
        return [_row(u) for u in session.scalars(select(User).order_by(User.username))]


def set_disabled(db: Database, username: str, disabled: bool, *, actor: str) -> UserRow:
    """Disable (ending their sessions) or enable a user; audited.

    Raises
    ------
    AccountError
        If there is no such user.
    """
    now = utcnow()
    with db.session() as session:
        user = _user(session, username)
        user.disabled = disabled
        if disabled:
            session.execute(
                update(UserSession)
                .where(UserSession.user_pk == user.id, UserSession.ended_at.is_(None))
                .values(ended_at=now)
            )
        kind = "user.disable" if disabled else "user.enable"
        AuditLog(db).append(kind, actor, f"user:{username}", {}, session=session)
        session.commit()
        return _row(user)


def set_password(db: Database, username: str, password: str, *, actor: str) -> None:
    """Replace a user's password and end their sessions; audited as ``user.password``.

    Raises
    ------
    AccountError
        If there is no such user or the password is too short.
    """
    _check_password(password)
    with db.session() as session:
        user = _user(session, username)
        user.password_hash = _hasher.hash(password)
        session.execute(
            update(UserSession)
            .where(UserSession.user_pk == user.id, UserSession.ended_at.is_(None))
            .values(ended_at=utcnow())
        )
        AuditLog(db).append("user.password", actor, f"user:{username}", {}, session=session)
        session.commit()


def authenticate_password(db: Database, username: str, password: str) -> UserRow | None:
    """The enabled user with this name and password, else None (same work either way)."""
    with db.session() as session:
        user = session.scalars(select(User).where(User.username == username)).first()
        if user is None:
            _hasher.verify(password, _DUMMY_HASH)
            return None
        ok, new_hash = _hasher.verify_and_update(password, user.password_hash)
        if not ok or user.disabled:
            return None
        if new_hash is not None:  # the recommended parameters changed: re-hash
            user.password_hash = new_hash
        user.last_sign_in_at = utcnow()
        session.commit()
        return _row(user)


def open_session(db: Database, settings: Settings, username: str) -> OpenedSession:
    """Start a session for a user who has just signed in; audited as ``session.open``."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = utcnow()
    expires = now + dt.timedelta(hours=settings.session_max_hours)
    with db.session() as session:
        user = _user(session, username)
        session.add(
            UserSession(
                token_sha256=_digest(token),
                user_pk=user.id,
                csrf_token=csrf,
                created_at=now,
                last_seen_at=now,
                expires_at=expires,
            )
        )
        AuditLog(db).append("session.open", username, f"user:{username}", {}, session=session)
        session.commit()
    return OpenedSession(token, csrf, expires)


def lookup_session(
    db: Database, settings: Settings, token: str, now: dt.datetime | None = None
) -> SessionLookup:
    """The user a session token stands for; ``expired`` once idle or past its end."""
    now = now or utcnow()
    with db.session() as session:
        row = session.scalars(
            select(UserSession).where(UserSession.token_sha256 == _digest(token))
        ).first()
        if row is None or row.ended_at is not None or row.user.disabled:
            return SessionLookup("unknown" if row is None else "expired")
        idle = dt.timedelta(minutes=settings.session_idle_minutes)
        if now >= as_utc(row.expires_at) or now - as_utc(row.last_seen_at) >= idle:
            row.ended_at = now
            session.commit()
            return SessionLookup("expired")
        if now - as_utc(row.last_seen_at) >= _TOUCH_EVERY:
            row.last_seen_at = now
            session.commit()
        return SessionLookup("ok", row.user.username, row.user.role, row.csrf_token)


def close_session(db: Database, token: str) -> bool:
    """End a session (sign-out); audited. False when it was not open."""
    with db.session() as session:
        row = session.scalars(
            select(UserSession).where(UserSession.token_sha256 == _digest(token))
        ).first()
        if row is None or row.ended_at is not None:
            return False
        row.ended_at = utcnow()
        name = row.user.username
        AuditLog(db).append("session.close", name, f"user:{name}", {}, session=session)
        session.commit()
        return True


def issue_token(db: Database, username: str, name: str, *, actor: str) -> str:
    """A new API token acting as ``username``; shown once, stored as its hash; audited.

    Raises
    ------
    AccountError
        If there is no such user or ``name`` is empty or longer than 64 characters.
    """
    if not 1 <= len(name) <= 64:
        raise AccountError("a token's name needs 1 to 64 characters (what uses it, e.g. 'ris')")
    token = "rp_" + secrets.token_urlsafe(32)
    with db.session() as session:
        user = _user(session, username)
        session.add(ApiToken(token_sha256=_digest(token), user_pk=user.id, name=name))
        AuditLog(db).append(
            "token.issue", actor, f"user:{username}", {"name": name}, session=session
        )
        session.commit()
    return token


def token_user(db: Database, token: str) -> UserRow | None:
    """The enabled user an API token acts as, else None."""
    now = utcnow()
    with db.session() as session:
        row = session.scalars(
            select(ApiToken).where(ApiToken.token_sha256 == _digest(token))
        ).first()
        if row is None or row.revoked_at is not None or row.user.disabled:
            return None
        if row.last_used_at is None or now - as_utc(row.last_used_at) >= _TOUCH_EVERY:
            row.last_used_at = now
            session.commit()
        return _row(row.user)
