"""The relational schema: patients, studies, series, instances, receipts, reads.

Changing a model means adding an Alembic revision (``make migration``); a test checks that
the migrations and these models agree on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Base",
    "CaseAttribute",
    "DeidRun",
    "Instance",
    "Patient",
    "Read",
    "Receipt",
    "ReceiptOutcome",
    "Series",
    "Study",
    "as_utc",
    "utcnow",
]

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

UID = String(64)


def utcnow() -> dt.datetime:
    """Timezone-aware now, in UTC; all stored times are UTC."""
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` as an aware UTC time (SQLite gives naive UTC, PostgreSQL aware times)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base with constraint names that Alembic can reproduce."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: DateTime(timezone=True)}


class Patient(Base):
    """A patient as the archive knows them (pseudonymised when intake de-identifies)."""

    __tablename__ = "patients"
    __table_args__ = (UniqueConstraint("patient_id", "issuer_of_patient_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64))
    issuer_of_patient_id: Mapped[str] = mapped_column(String(64), default="")
    patient_name: Mapped[str | None] = mapped_column(String(324))
    birth_date: Mapped[str | None] = mapped_column(String(8))
    sex: Mapped[str | None] = mapped_column(String(16))

    studies: Mapped[list[Study]] = relationship(back_populates="patient")


class Study(Base):
    """One imaging study, identified by its Study Instance UID."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    accession_number: Mapped[str | None] = mapped_column(String(64), index=True)
    study_date: Mapped[str | None] = mapped_column(String(8))
    study_time: Mapped[str | None] = mapped_column(String(32))
    study_description: Mapped[str | None] = mapped_column(String(256))
    institution_name: Mapped[str | None] = mapped_column(String(128))
    patient_age: Mapped[str | None] = mapped_column(String(8))
    patient_age_years: Mapped[float | None] = mapped_column(Float)
    first_received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column()

    patient: Mapped[Patient] = relationship(back_populates="studies")
    series: Mapped[list[Series]] = relationship(back_populates="study")
    reads: Mapped[list[Read]] = relationship(back_populates="study")
    attributes: Mapped[list[CaseAttribute]] = relationship(back_populates="study")


class Series(Base):
    """One series; holds the device and protocol fields the inventory groups by."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(primary_key=True)
    series_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    series_number: Mapped[int | None] = mapped_column(Integer)
    modality: Mapped[str | None] = mapped_column(String(16), index=True)
    body_part_examined: Mapped[str | None] = mapped_column(String(64))
    view_position: Mapped[str | None] = mapped_column(String(16))
    series_description: Mapped[str | None] = mapped_column(String(256))
    protocol_name: Mapped[str | None] = mapped_column(String(256))
    manufacturer: Mapped[str | None] = mapped_column(String(128))
    manufacturer_model_name: Mapped[str | None] = mapped_column(String(128))
    software_versions: Mapped[str | None] = mapped_column(String(256))
    station_name: Mapped[str | None] = mapped_column(String(64))
    institution_name: Mapped[str | None] = mapped_column(String(128))
    convolution_kernel: Mapped[str | None] = mapped_column(String(64))

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Instance(Base):
    """One stored SOP instance and where its file lies in the archive."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    instance_number: Mapped[int | None] = mapped_column(Integer)
    transfer_syntax_uid: Mapped[str] = mapped_column(UID)
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    number_of_frames: Mapped[int | None] = mapped_column(Integer)
    bits_allocated: Mapped[int | None] = mapped_column(Integer)
    bits_stored: Mapped[int | None] = mapped_column(Integer)
    photometric_interpretation: Mapped[str | None] = mapped_column(String(32))
    pixel_spacing: Mapped[str | None] = mapped_column(String(64))
    slice_thickness: Mapped[float | None] = mapped_column(Float)
    kvp: Mapped[float | None] = mapped_column(Float)
    burned_in_annotation: Mapped[str | None] = mapped_column(String(16))
    file_path: Mapped[str] = mapped_column(String(512))
    file_size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(16))
    calling_ae_title: Mapped[str | None] = mapped_column(String(16))
    deidentified: Mapped[bool] = mapped_column(default=False)

    series: Mapped[Series] = relationship(back_populates="instances")


class ReceiptOutcome(enum.StrEnum):
    """What happened to one arrival (network or import)."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"  # same SOP Instance UID, different bytes: kept aside
    REJECTED = "rejected"
    QUARANTINED = "quarantined"
    SKIPPED = "skipped"  # not DICOM (import only)


class Receipt(Base):
    """The intake's ledger: one row per arrival, whatever its outcome."""

    __tablename__ = "receipts"
    __table_args__ = (Index("ix_receipts_outcome_at", "outcome", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(16))  # "dicom" or "import"
    origin: Mapped[str | None] = mapped_column(String(512))  # AET@host or file path
    outcome: Mapped[ReceiptOutcome] = mapped_column(
        Enum(
            ReceiptOutcome,
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    sop_instance_uid: Mapped[str | None] = mapped_column(UID, index=True)
    study_instance_uid: Mapped[str | None] = mapped_column(UID)
    sha256: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer)  # DIMSE status sent, network only
    reason: Mapped[str | None] = mapped_column(Text)
    stored_path: Mapped[str | None] = mapped_column(String(512))


class Read(Base):
    """A reference label or one reader's read of a study; several per study are normal."""

    __tablename__ = "reads"
    __table_args__ = (UniqueConstraint("study_pk", "finding", "reader", "read_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    finding: Mapped[str] = mapped_column(String(128))
    value: Mapped[int] = mapped_column(Integer)  # 1 present, 0 absent
    reader: Mapped[str] = mapped_column(String(128), default="reference")
    read_at: Mapped[dt.datetime | None] = mapped_column()
    imported_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    source_file: Mapped[str | None] = mapped_column(String(512))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    study: Mapped[Study] = relationship(back_populates="reads")


class CaseAttribute(Base):
    """A named attribute of a case (study) from label files, usable for subgroups."""

    __tablename__ = "case_attributes"
    __table_args__ = (UniqueConstraint("study_pk", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    value: Mapped[str | None] = mapped_column(Text)

    study: Mapped[Study] = relationship(back_populates="attributes")


class DeidRun(Base):
    """A PHI-free record of one de-identification run."""

    __tablename__ = "deid_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column()
    profile: Mapped[str] = mapped_column(String(256))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
