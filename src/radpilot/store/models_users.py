"""Who may use the web app and the API: users with a role, their sessions and API tokens.

Secrets are never stored: a password as its argon2 hash (pwdlib), a session or API token
as the SHA-256 of a 256-bit random value (a fast hash is right for values that cannot be
guessed; a password hash is for values that can).
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Boolean, Enum, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from radpilot.store.models import Base, utcnow

__all__ = ["ApiToken", "Role", "User", "UserSession"]


class Role(enum.StrEnum):
    """What a user may do: read and decide; administer; oversee (governance)."""

    RADIOLOGIST = "radiologist"
    ADMIN = "admin"
    GOVERNANCE = "governance"


class User(Base):
    """A local user. Disabled users keep their row: decisions and audit entries name them."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(128))
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    password_hash: Mapped[str] = mapped_column(String(256))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))
    last_sign_in_at: Mapped[dt.datetime | None] = mapped_column()


class UserSession(Base):
    """A signed-in browser. The cookie holds the token; the row holds its hash."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()  # absolute end, whatever the activity
    ended_at: Mapped[dt.datetime | None] = mapped_column()  # signed out or revoked

    user: Mapped[User] = relationship()


class ApiToken(Base):
    """A bearer token for a machine client (RIS, script), acting as its user."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()

    user: Mapped[User] = relationship()
