"""Tables of the validation stage: declared use cases and the reports kept per model."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from radpilot.store.models import Base, utcnow

__all__ = ["UseCaseRecord", "ValidationReportRecord"]


class UseCaseRecord(Base):
    """One version of a use case as declared: the file's text, never edited afterwards."""

    __tablename__ = "use_cases"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per name
    text: Mapped[str] = mapped_column(Text)  # the YAML as given
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[dict[str, Any]] = mapped_column(JSON)  # as parsed
    added_by: Mapped[str] = mapped_column(String(128))
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ValidationReportRecord(Base):
    """A validation report kept with the model version it validated."""

    __tablename__ = "validation_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_pk: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    use_case_pk: Mapped[int | None] = mapped_column(ForeignKey("use_cases.id"))
    path: Mapped[str] = mapped_column(String(512))  # folder inside the data dir
    sha256: Mapped[str] = mapped_column(String(64))  # of report.json
    cases: Mapped[int] = mapped_column(Integer)
    excluded: Mapped[int] = mapped_column(Integer)
    verdict: Mapped[str | None] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
