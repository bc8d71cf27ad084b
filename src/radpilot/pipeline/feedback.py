"""Recording a reader's decision on an AI result: accept, modify or reject.

Every decision is one new ``feedback`` row (never updated) and one ``feedback.decision``
entry in the audit chain, written in the same transaction: either both exist or neither.
The audit entry names the reader as its actor and holds no free text (which may hold
patient details); the feedback row keeps the text.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from radpilot.core.errors import RadpilotError
from radpilot.governance.audit import AuditLog
from radpilot.pipeline.worklist import find_study
from radpilot.pipeline.worklist_rows import FeedbackRow, as_utc, feedback_row
from radpilot.store import Database
from radpilot.store.models import Study, utcnow
from radpilot.store.models_pipeline import Decision, Feedback, ModelVersion, Result

__all__ = [
    "AUDIT_KIND",
    "CorrectedMeasurement",
    "FeedbackError",
    "FeedbackRequest",
    "InvalidFeedbackError",
    "RecordedFeedback",
    "ResultMismatchError",
    "record_feedback",
]

AUDIT_KIND = "feedback.decision"
_REASON = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_CLOCK_SKEW = dt.timedelta(seconds=60)
_RETRIES = 5


class FeedbackError(RadpilotError):
    """A decision could not be recorded."""


class InvalidFeedbackError(FeedbackError):
    """A field of the decision is missing or invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ResultMismatchError(FeedbackError):
    """The result named is not a visible AI result of the study named."""


@dataclass(frozen=True)
class CorrectedMeasurement:
    """A measurement as the reader corrected it (value in the UCUM ``unit``)."""

    name: str
    value: float
    unit: str


@dataclass(frozen=True)
class FeedbackRequest:
    """What a reader decided; validated by :func:`record_feedback`.

    ``result_id`` may be left out when the study has exactly one visible result.
    ``opened_at`` is when the reader opened the study (for latency statistics).
    """

    decision: Decision | str
    reader: str | None
    result_id: int | None = None
    reason_code: str | None = None
    free_text: str | None = None
    corrected_label: str | None = None
    corrected_measurement: CorrectedMeasurement | None = None
    opened_at: dt.datetime | None = None


@dataclass(frozen=True)
class RecordedFeedback:
    """The stored decision, the result it is about and its place in the audit chain."""

    feedback: FeedbackRow
    study_instance_uid: str
    model_name: str
    model_version: str
    audit_seq: int


def _check(request: FeedbackRequest, now: dt.datetime) -> tuple[Decision, str]:
    try:
        decision = Decision(request.decision)
    except ValueError:
        raise InvalidFeedbackError(
            "decision", f"must be one of {', '.join(d.value for d in Decision)}"
        ) from None
    reader = (request.reader or "").strip()
    if not reader:
        raise InvalidFeedbackError(
            "reader", "a reader id is required (who decided); send it as 'reader'"
        )
    if len(reader) > 128 or not reader.isprintable():
        raise InvalidFeedbackError("reader", "must be 1-128 printable characters")
    if request.reason_code is not None and not _REASON.match(request.reason_code):
        raise InvalidFeedbackError(
            "reason_code",
            "must be 1-64 letters, digits or . _ : - (e.g. false_positive, wrong_location)",
        )
    if request.free_text is not None and len(request.free_text) > 4000:
        raise InvalidFeedbackError("free_text", "must be at most 4000 characters")
    label = request.corrected_label
    if label is not None and not 0 < len(label.strip()) <= 128:
        raise InvalidFeedbackError("corrected_label", "must be 1-128 characters")
    m = request.corrected_measurement
    if m is not None:
        if not math.isfinite(m.value):
            raise InvalidFeedbackError("corrected_measurement", "value must be a finite number")
        if not (0 < len(m.name.strip()) <= 64 and 0 < len(m.unit.strip()) <= 32):
            raise InvalidFeedbackError(
                "corrected_measurement", "needs a name (1-64) and a UCUM unit (1-32), e.g. mm"
            )
    corrected = label is not None or m is not None
    if decision is Decision.MODIFY and not corrected:
        raise InvalidFeedbackError(
            "corrected_label",
            "decision 'modify' needs the correction: corrected_label or corrected_measurement",
        )
    if decision is Decision.ACCEPT and corrected:
        raise InvalidFeedbackError(
            "decision", "an accepted result has no correction; send decision 'modify' instead"
        )
    if request.opened_at is not None:
        if request.opened_at.tzinfo is None:
            raise InvalidFeedbackError("opened_at", "needs a time zone, e.g. 2024-05-01T08:30:00Z")
        if request.opened_at > now + _CLOCK_SKEW:
            raise InvalidFeedbackError("opened_at", "is in the future; check the client's clock")
    return decision, reader


def _result_of(session: Session, study: Study, result_id: int | None) -> tuple[Result, str, str]:
    visible = select(Result, ModelVersion.name, ModelVersion.version).join(
        ModelVersion, Result.model_version_pk == ModelVersion.id
    )
    if result_id is not None:
        found = session.execute(
            visible.where(
                Result.id == result_id, Result.study_pk == study.id, Result.visible.is_(True)
            )
        ).first()
        if found is None:
            raise ResultMismatchError(
                f"result {result_id} is not an AI result of study {study.id}; "
                f"GET /api/studies/{study.id} lists its results"
            )
        return found
    candidates = session.execute(
        visible.where(Result.study_pk == study.id, Result.visible.is_(True))
    ).all()
    if not candidates:
        raise ResultMismatchError(f"study {study.id} has no AI result to decide on")
    if len(candidates) > 1:
        ids = ", ".join(str(c[0].id) for c in sorted(candidates, key=lambda c: c[0].id))
        raise InvalidFeedbackError(
            "result_id", f"study {study.id} has {len(candidates)} AI results; name one of {ids}"
        )
    return candidates[0]


def record_feedback(
    db: Database,
    study: int | str,
    request: FeedbackRequest,
    actor: str | None = None,
    now: dt.datetime | None = None,
) -> RecordedFeedback:
    """Validate and store one decision with its audit entry, in one transaction.

    Parameters
    ----------
    db
        The installation's database.
    study
        The study's numeric id or Study Instance UID.
    request
        The decision.
    actor
        Who recorded it, when not the reader themself (e.g. a service account); it goes
        into the audit payload as ``recorded_by``.
    now
        The decision time (default: now, UTC).

    Raises
    ------
    InvalidFeedbackError
        If a field is missing or invalid (e.g. 'modify' without a correction).
    radpilot.pipeline.worklist.StudyNotFoundError
        If no study has that id or UID.
    ResultMismatchError
        If the result is not a visible result of that study, or the study has none.
    """
    now = as_utc(now) if now is not None else utcnow()
    decision, reader = _check(request, now)
    m = request.corrected_measurement
    for attempt in range(_RETRIES):
        try:
            with db.session() as session:
                return _store(session, db, study, request, decision, reader, actor, now, m)
        except IntegrityError:
            # Two decisions raced for the same audit ``seq``; ours rolled back whole.
            if attempt == _RETRIES - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _store(
    session: Session,
    db: Database,
    key: int | str,
    request: FeedbackRequest,
    decision: Decision,
    reader: str,
    actor: str | None,
    now: dt.datetime,
    m: CorrectedMeasurement | None,
) -> RecordedFeedback:
    study = find_study(session, key)
    result, model_name, model_version = _result_of(session, study, request.result_id)
    measurement: dict[str, Any] | None = (
        None if m is None else {"name": m.name.strip(), "value": m.value, "unit": m.unit.strip()}
    )
    fb = Feedback(
        study_pk=study.id,
        result_pk=result.id,
        decision=decision,
        reason_code=request.reason_code,
        free_text=request.free_text,
        corrected_label=request.corrected_label.strip() if request.corrected_label else None,
        corrected_measurement=measurement,
        reader=reader,
        opened_at=request.opened_at,
        decided_at=now,
    )
    session.add(fb)
    session.flush()
    entry = AuditLog(db).append(
        kind=AUDIT_KIND,
        actor=reader,
        subject=study.study_instance_uid,
        payload={
            "feedback_id": fb.id,
            "study_id": study.id,
            "result_id": result.id,
            "model": model_name,
            "model_version": model_version,
            "finding": result.finding,
            "score": result.score,
            "decision": decision.value,
            "reason_code": request.reason_code,
            "corrected_label": fb.corrected_label,
            "corrected_measurement": measurement,
            "has_free_text": bool(request.free_text),
            "recorded_by": actor or reader,
        },
        session=session,
    )
    return RecordedFeedback(
        feedback=feedback_row(fb),
        study_instance_uid=study.study_instance_uid,
        model_name=model_name,
        model_version=model_version,
        audit_seq=entry.seq,
    )
