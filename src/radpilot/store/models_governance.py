"""The schema of model governance: requested state transitions and their approvals."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from radpilot.store.models import Base, utcnow
from radpilot.store.models_pipeline import ModelState, ModelVersion

__all__ = ["Approval", "Transition", "TransitionStatus"]


def _enum(cls: type[enum.StrEnum]) -> Enum:
    return Enum(cls, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


class TransitionStatus(enum.StrEnum):
    """Where a requested transition stands."""

    PENDING = "pending"  # waiting for approvals
    APPLIED = "applied"  # approved and carried out
    REJECTED = "rejected"  # an approver said no


class Transition(Base):
    """A request to move a model version from one state to another."""

    __tablename__ = "model_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_pk: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    from_state: Mapped[ModelState] = mapped_column(_enum(ModelState))
    to_state: Mapped[ModelState] = mapped_column(_enum(ModelState))
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(128))
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status: Mapped[TransitionStatus] = mapped_column(
        _enum(TransitionStatus), default=TransitionStatus.PENDING
    )
    decided_at: Mapped[dt.datetime | None] = mapped_column()
    comparison: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # champion/challenger

    model_version: Mapped[ModelVersion] = relationship()
    approvals: Mapped[list[Approval]] = relationship(back_populates="transition")


class Approval(Base):
    """One person's yes (or no) to a transition, with the role they held."""

    __tablename__ = "model_transition_approvals"
    __table_args__ = (UniqueConstraint("transition_pk", "approver"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    transition_pk: Mapped[int] = mapped_column(ForeignKey("model_transitions.id"), index=True)
    approver: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    approved: Mapped[bool] = mapped_column()
    comment: Mapped[str | None] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    transition: Mapped[Transition] = relationship(back_populates="approvals")
