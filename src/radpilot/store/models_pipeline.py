"""The schema of the inference pipeline: model versions, jobs, results, the outbox,
feedback and the audit log.

Latency stamps live on the rows they belong to (``jobs.queued_at`` … ``deliveries.
delivered_at``, ``feedback.opened_at`` / ``decided_at``) so that ``radpilot stats latency``
is a join, not a second bookkeeping.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from radpilot.store.models import UID, Base, Study, utcnow

__all__ = [
    "AuditEntry",
    "Decision",
    "Delivery",
    "DeliveryStatus",
    "Feedback",
    "Job",
    "JobStatus",
    "ModelState",
    "ModelVersion",
    "Result",
    "ResultEmbedding",
    "ResultObject",
]


def _enum(cls: type[enum.StrEnum], length: int = 16) -> Enum:
    return Enum(
        cls, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e]
    )


class ModelState(enum.StrEnum):
    """Lifecycle of a registered model version."""

    REGISTERED = "registered"  # known, never run
    SHADOW = "shadow"  # runs; results kept but never shown or sent
    PILOT = "pilot"  # runs; results shown and delivered, under evaluation before active
    ACTIVE = "active"  # runs; results shown and delivered
    SUSPENDED = "suspended"  # stopped (an incident, a drift alarm) until resumed or retired
    RETIRED = "retired"  # never runs again; its results stay


class ModelVersion(Base):
    """One version of a model package, as the registry holds it."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(32))
    runtime: Mapped[str] = mapped_column(String(32))
    use_case: Mapped[str | None] = mapped_column(String(128))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    weights_sha256: Mapped[str] = mapped_column(String(64))
    package_path: Mapped[str] = mapped_column(String(512))  # inside the data dir
    added_by: Mapped[str] = mapped_column(String(128))
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    state: Mapped[ModelState] = mapped_column(_enum(ModelState), default=ModelState.REGISTERED)
    state_changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    state_changed_by: Mapped[str] = mapped_column(String(128))

    @property
    def label(self) -> str:
        """``name:version``, the way commands and logs name it."""
        return f"{self.name}:{self.version}"


class JobStatus(enum.StrEnum):
    """Where a job stands."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Job(Base):
    """Run one model version over the selected series of one study.

    ``source_key`` is a digest of the selected instances: the same study, model version
    and input give the same key, so a repeated study-complete event or a re-run never
    creates a second job or a second result.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("study_pk", "model_version_pk", "source_key"),
        Index("ix_jobs_status_not_before", "status", "not_before"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    model_version_pk: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    source_key: Mapped[str] = mapped_column(String(64))
    series_uids: Mapped[list[str]] = mapped_column(JSON)
    rule: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus), default=JobStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    not_before: Mapped[dt.datetime] = mapped_column(default=utcnow)  # backoff
    worker: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    queued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column()
    inference_started_at: Mapped[dt.datetime | None] = mapped_column()
    inference_ended_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()

    study: Mapped[Study] = relationship()
    model_version: Mapped[ModelVersion] = relationship()


class Result(Base):
    """What one model version said about one study (one row per job that succeeded).

    ``visible`` is false for shadow models: such results are kept for evaluation and
    never shown on the worklist nor sent anywhere.
    """

    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("study_pk", "model_version_pk", "source_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    model_version_pk: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    source_key: Mapped[str] = mapped_column(String(64))
    finding: Mapped[str | None] = mapped_column(String(128))  # headline finding
    score: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    operating_point: Mapped[str | None] = mapped_column(String(64))
    positive: Mapped[bool] = mapped_column(Boolean, default=False)
    critical: Mapped[bool] = mapped_column(Boolean, default=False)
    visible: Mapped[bool] = mapped_column(Boolean, default=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # all findings etc.
    stored_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    study: Mapped[Study] = relationship()
    model_version: Mapped[ModelVersion] = relationship()
    job: Mapped[Job] = relationship()
    objects: Mapped[list[ResultObject]] = relationship(back_populates="result")


class ResultObject(Base):
    """A file made from a result: SR, SEG, key image, derived image, report, heatmap."""

    __tablename__ = "result_objects"
    __table_args__ = (UniqueConstraint("result_pk", "kind", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    result_pk: Mapped[int] = mapped_column(ForeignKey("results.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # sr, seg, sc, derived, text, fhir, heatmap
    name: Mapped[str] = mapped_column(String(128))  # unique within the result and kind
    sop_instance_uid: Mapped[str | None] = mapped_column(UID, unique=True)
    sop_class_uid: Mapped[str | None] = mapped_column(UID)
    media_type: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(512))  # relative to the data dir
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    result: Mapped[Result] = relationship(back_populates="objects")


class ResultEmbedding(Base):
    """A result's embedding: the network's penultimate-layer features for the study,
    little-endian float32 (``radpilot.models.embedding``). Kept beside ``results`` so
    that the worklist, which reads ``details`` for every row, never loads vectors."""

    __tablename__ = "result_embeddings"

    result_pk: Mapped[int] = mapped_column(ForeignKey("results.id"), primary_key=True)
    dimensions: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class DeliveryStatus(enum.StrEnum):
    """Where one object stands with one destination."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # refused for good (e.g. the PACS rejected the object)


class Delivery(Base):
    """The outbox: one row per (object, destination); delivered at most once."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("object_pk", "destination"),
        Index("ix_deliveries_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    object_pk: Mapped[int] = mapped_column(ForeignKey("result_objects.id"), index=True)
    destination: Mapped[str] = mapped_column(String(64))
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column()

    object: Mapped[ResultObject] = relationship()


class Decision(enum.StrEnum):
    """A radiologist's decision on an AI result."""

    ACCEPT = "accept"
    MODIFY = "modify"
    REJECT = "reject"


class Feedback(Base):
    """A radiologist's decision on a study's AI result; never updated, only added."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    result_pk: Mapped[int | None] = mapped_column(ForeignKey("results.id"), index=True)
    decision: Mapped[Decision] = mapped_column(_enum(Decision))
    reason_code: Mapped[str | None] = mapped_column(String(64))
    free_text: Mapped[str | None] = mapped_column(Text)
    corrected_label: Mapped[str | None] = mapped_column(String(128))
    corrected_measurement: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reader: Mapped[str] = mapped_column(String(128))
    opened_at: Mapped[dt.datetime | None] = mapped_column()
    decided_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    study: Mapped[Study] = relationship()
    result: Mapped[Result | None] = relationship()


class AuditEntry(Base):
    """One link of the hash-chained, append-only audit log.

    ``entry_hash`` is SHA-256 over the canonical JSON of every other column, including
    ``prev_hash``; the database refuses UPDATE and DELETE on this table (triggers).
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    subject: Mapped[str] = mapped_column(String(256))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)
