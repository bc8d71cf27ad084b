"""The API's request and response bodies, one model per role (``...In`` in, ``...Out`` out).

Responses are built from the pipeline's typed rows (``from_attributes``); requests are
checked here for shape and types (422 with the field's location), and by
:func:`radpilot.pipeline.feedback.record_feedback` for the rules that need the database.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from radpilot.pipeline.feedback import CorrectedMeasurement, FeedbackRequest
from radpilot.pipeline.worklist import AiStatus
from radpilot.store.models_pipeline import Decision

__all__ = [
    "DecisionOut",
    "ErrorOut",
    "FeedbackIn",
    "FeedbackOut",
    "HealthOut",
    "MeasurementIn",
    "MeasurementOut",
    "ObjectOut",
    "RecordedFeedbackOut",
    "ResultDetailOut",
    "ResultOut",
    "SeriesOut",
    "StudyOut",
    "WorklistItem",
]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, protected_namespaces=())


class ErrorOut(BaseModel):
    """Every error answer: what went wrong and how to fix it."""

    detail: str


class HealthOut(BaseModel):
    """``GET /api/health``."""

    status: str
    database: str
    version: str


class ObjectOut(_Out):
    """A file made from a result (SR, SEG, key image, report...)."""

    id: int
    kind: str
    name: str
    media_type: str
    sop_instance_uid: str | None
    created_at: dt.datetime


class ResultOut(_Out):
    """One visible AI result as the worklist shows it."""

    id: int
    model_name: str
    model_version: str
    finding: str | None
    score: float | None
    threshold: float | None
    operating_point: str | None
    above_operating_point: bool = Field(
        description="positive at the model's operating point (score at or above threshold)"
    )
    critical: bool = Field(description="positive for a finding the model lists as critical")
    stored_at: dt.datetime


class ResultDetailOut(ResultOut):
    """A result with everything the model said and the files made from it."""

    details: dict[str, Any]
    objects: list[ObjectOut]


class MeasurementIn(BaseModel):
    """A corrected measurement."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    value: float = Field(allow_inf_nan=False)
    unit: str = Field(min_length=1, max_length=32, description="UCUM unit, e.g. mm or cm3")


class MeasurementOut(BaseModel):
    """A stored corrected measurement."""

    name: str
    value: float
    unit: str


class DecisionOut(_Out):
    """The latest decision on a study, as the worklist shows it."""

    id: int
    decision: Decision
    result_id: int | None
    reader: str
    reason_code: str | None
    decided_at: dt.datetime


class FeedbackIn(BaseModel):
    """``POST /api/studies/{id}/feedback``: a reader's decision on one AI result.

    ``result_id`` may be left out when the study has exactly one AI result. ``reader``
    is required without a token; with a token it defaults to the token's reader and must
    match it. ``decision`` 'modify' needs ``corrected_label`` or ``corrected_measurement``.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "decision": "reject",
                    "result_id": 12,
                    "reason_code": "false_positive",
                    "free_text": "Overlapping scapula, no consolidation.",
                    "reader": "dr.jones",
                }
            ]
        },
    )

    decision: Decision
    result_id: int | None = Field(None, ge=1)
    reason_code: str | None = Field(
        None, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", examples=["false_positive"]
    )
    free_text: str | None = Field(None, max_length=4000)
    corrected_label: str | None = Field(None, min_length=1, max_length=128)
    corrected_measurement: MeasurementIn | None = None
    reader: str | None = Field(None, min_length=1, max_length=128)
    opened_at: AwareDatetime | None = Field(
        None, description="when the reader opened the study (for latency statistics)"
    )

    def to_request(self, reader: str | None) -> FeedbackRequest:
        """The pipeline's request, with ``reader`` as decided by the route."""
        m = self.corrected_measurement
        return FeedbackRequest(
            decision=self.decision,
            reader=reader,
            result_id=self.result_id,
            reason_code=self.reason_code,
            free_text=self.free_text,
            corrected_label=self.corrected_label,
            corrected_measurement=None
            if m is None
            else CorrectedMeasurement(name=m.name, value=m.value, unit=m.unit),
            opened_at=self.opened_at,
        )


class FeedbackOut(_Out):
    """One stored decision."""

    id: int
    study_id: int
    result_id: int | None
    decision: Decision
    reason_code: str | None
    free_text: str | None
    corrected_label: str | None
    corrected_measurement: MeasurementOut | None
    reader: str
    opened_at: dt.datetime | None
    decided_at: dt.datetime


class RecordedFeedbackOut(FeedbackOut):
    """The answer to a recorded decision: the row, its result's model and its audit entry."""

    study_instance_uid: str
    model_name: str
    model_version: str
    audit_seq: int


class WorklistItem(_Out):
    """One study on the worklist; the list comes in priority order.

    ``priority``: 3 a visible result is critical, 2 one is positive, 1 there are results,
    0 none yet. ``patient_id`` is the identifier as stored (a pseudonym where intake
    de-identifies); ``patient_name`` is given only when ``RADPILOT_WORKLIST_PATIENT_NAMES``
    is on.
    """

    study_id: int
    study_instance_uid: str
    accession_number: str | None
    patient_id: str
    patient_name: str | None = None
    age: str | None
    age_years: float | None
    sex: str | None
    modalities: list[str]
    body_parts: list[str]
    study_description: str | None
    received_at: dt.datetime
    completed_at: dt.datetime | None
    waiting_seconds: float
    ai_status: AiStatus
    priority: int
    critical: bool
    max_score: float | None
    results: list[ResultOut]
    decision: DecisionOut | None


class SeriesOut(_Out):
    """One series of a study."""

    series_instance_uid: str
    series_number: int | None
    modality: str | None
    body_part: str | None
    series_description: str | None
    instances: int


class StudyOut(WorklistItem):
    """``GET /api/studies/{id}``: the worklist fields, full results, series, decisions."""

    results: list[ResultDetailOut]  # type: ignore[assignment]
    series: list[SeriesOut]
    feedback: list[FeedbackOut]
