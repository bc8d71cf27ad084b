"""The schema of alerts (monitoring rules that fired) and incidents (reported by people)."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, Enum, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from radpilot.store.models import Base, utcnow

__all__ = ["Alert", "AlertStatus", "Incident", "IncidentKind", "IncidentStatus", "Severity"]


def _enum(cls: type[enum.StrEnum]) -> Enum:
    return Enum(cls, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


class AlertStatus(enum.StrEnum):
    """Open until someone acknowledges it; resolved when handled or the cause cleared."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Alert(Base):
    """One cause that fired for one model; at most one unresolved alert per cause."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_model_cause", "model", "cause"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    cause: Mapped[str] = mapped_column(String(128))  # e.g. drift:scanner_model, discordance
    message: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    status: Mapped[AlertStatus] = mapped_column(_enum(AlertStatus), default=AlertStatus.OPEN)
    opened_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    seen: Mapped[int] = mapped_column(default=1)  # evaluations that found the cause
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column()
    resolved_by: Mapped[str | None] = mapped_column(String(128))
    resolved_at: Mapped[dt.datetime | None] = mapped_column()
    notified: Mapped[list[Any]] = mapped_column(JSON, default=list)


class IncidentKind(enum.StrEnum):
    """What went wrong, as the reporter saw it."""

    WRONG_RESULT = "wrong_result"  # a wrong AI result that mattered
    MISSED_FINDING = "missed_finding"
    SYSTEM_FAILURE = "system_failure"
    OTHER = "other"


class Severity(enum.StrEnum):
    """Governance's classification."""

    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"
    CRITICAL = "critical"


class IncidentStatus(enum.StrEnum):
    """Reported, being reviewed (classified), closed."""

    REPORTED = "reported"
    REVIEWED = "reviewed"
    CLOSED = "closed"


class Incident(Base):
    """An AI incident reported from a study."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    result_pk: Mapped[int | None] = mapped_column(ForeignKey("results.id"))
    model: Mapped[str | None] = mapped_column(String(200))  # name:version of the result
    kind: Mapped[IncidentKind] = mapped_column(_enum(IncidentKind))
    description: Mapped[str] = mapped_column(Text)  # free text: stored, never logged
    reported_by: Mapped[str] = mapped_column(String(128))
    reported_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    severity: Mapped[Severity | None] = mapped_column(_enum(Severity))
    classified_by: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[IncidentStatus] = mapped_column(
        _enum(IncidentStatus), default=IncidentStatus.REPORTED
    )
    actions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    closed_by: Mapped[str | None] = mapped_column(String(128))
    closed_at: Mapped[dt.datetime | None] = mapped_column()
