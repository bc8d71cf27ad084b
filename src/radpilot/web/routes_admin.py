"""Administration and governance routes: users and tokens (admin), the audit trail
(governance and admin). A radiologist gets 403 on every one of them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from radpilot.governance.audit import AuditLog
from radpilot.store.models_pipeline import AuditEntry
from radpilot.store.models_users import Role
from radpilot.web import accounts
from radpilot.web.deps import Actor, DbDep, require_roles
from radpilot.web.schemas import ErrorOut

__all__ = ["admin", "governance"]

Admin = Annotated[Actor, Depends(require_roles(Role.ADMIN))]
Overseer = Annotated[Actor, Depends(require_roles(Role.GOVERNANCE, Role.ADMIN))]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
}

admin = APIRouter(prefix="/api/admin", tags=["admin"], responses=_ERRORS)
governance = APIRouter(prefix="/api/governance", tags=["governance"], responses=_ERRORS)


class UserIn(BaseModel):
    """A new user."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=2, max_length=64)
    password: str = Field(min_length=accounts.MIN_PASSWORD_LENGTH, max_length=1024)
    role: Role
    display_name: str | None = Field(None, max_length=128)


class UserOut(BaseModel):
    """A user, without secrets."""

    model_config = ConfigDict(from_attributes=True)

    username: str
    display_name: str | None
    role: Role
    disabled: bool
    created_at: dt.datetime
    last_sign_in_at: dt.datetime | None


class TokenIn(BaseModel):
    """What the new token is for."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)


class TokenOut(BaseModel):
    """The new token, shown this once."""

    username: str
    name: str
    token: str


class AuditEntryOut(BaseModel):
    """One audit log entry."""

    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: dt.datetime
    kind: str
    actor: str
    subject: str
    payload: dict[str, Any]
    entry_hash: str


class VerifyOut(BaseModel):
    """Whether the hash chain holds; the first broken entry when not."""

    ok: bool
    entries: int
    first_broken_seq: int | None
    reason: str | None


def _account_error(exc: accounts.AccountError) -> HTTPException:
    text = str(exc)
    code = status.HTTP_404_NOT_FOUND if text.startswith("no user") else status.HTTP_409_CONFLICT
    return HTTPException(code, text)


@admin.get("/users", response_model=list[UserOut])
def list_users(db: DbDep, _actor: Admin) -> list[UserOut]:
    """Every user."""
    return [UserOut.model_validate(u) for u in accounts.list_users(db)]


@admin.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def add_user(db: DbDep, actor: Admin, body: UserIn) -> UserOut:
    """Add a user; 409 when the name is taken or not valid."""
    try:
        row = accounts.add_user(
            db,
            body.username,
            body.password,
            body.role,
            display_name=body.display_name,
            actor=actor.id,
        )
    except accounts.AccountError as exc:
        raise _account_error(exc) from None
    return UserOut.model_validate(row)


@admin.post("/users/{username}/disable", response_model=UserOut)
def disable_user(db: DbDep, actor: Admin, username: str) -> UserOut:
    """Disable a user and end their sessions (their tokens stop working too)."""
    if username == actor.id:
        raise HTTPException(status.HTTP_409_CONFLICT, "you cannot disable yourself")
    try:
        return UserOut.model_validate(accounts.set_disabled(db, username, True, actor=actor.id))
    except accounts.AccountError as exc:
        raise _account_error(exc) from None


@admin.post("/users/{username}/enable", response_model=UserOut)
def enable_user(db: DbDep, actor: Admin, username: str) -> UserOut:
    """Enable a disabled user again."""
    try:
        return UserOut.model_validate(accounts.set_disabled(db, username, False, actor=actor.id))
    except accounts.AccountError as exc:
        raise _account_error(exc) from None


@admin.post("/users/{username}/tokens", response_model=TokenOut, status_code=201)
def issue_token(db: DbDep, actor: Admin, username: str, body: TokenIn) -> TokenOut:
    """A new API token acting as ``username``; its value is shown only in this answer."""
    try:
        token = accounts.issue_token(db, username, body.name, actor=actor.id)
    except accounts.AccountError as exc:
        raise _account_error(exc) from None
    return TokenOut(username=username, name=body.name, token=token)


@governance.get("/audit", response_model=list[AuditEntryOut])
def audit_entries(
    db: DbDep,
    _actor: Overseer,
    before: Annotated[int | None, Query(ge=1, description="entries before this seq")] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AuditEntryOut]:
    """The newest audit entries first (page back with ``before``)."""
    query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
    if before is not None:
        query = query.where(AuditEntry.seq < before)
    if kind:
        query = query.where(AuditEntry.kind == kind)
    with db.session() as session:
        return [AuditEntryOut.model_validate(e) for e in session.scalars(query)]


@governance.get("/audit/verify", response_model=VerifyOut)
def audit_verify(db: DbDep, _actor: Overseer) -> VerifyOut:
    """Walk the whole hash chain (as ``radpilot audit verify`` does)."""
    result = AuditLog(db).verify()
    return VerifyOut(
        ok=result.ok,
        entries=result.entries,
        first_broken_seq=result.first_broken_seq,
        reason=result.reason,
    )
