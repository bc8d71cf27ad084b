"""Recording what became of each claimed delivery: the row and the audit entry together.

Each destination's outcomes are written in one transaction: the ``deliveries`` rows
(delivered, failed, or pending again with exponential backoff) and one audit entry per
delivery or definitive refusal. A transaction that loses a race (SQLite busy, a PostgreSQL
writer taking the same audit ``seq``) is tried again as a whole.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from radpilot.core.logging import ref
from radpilot.core.settings import Settings
from radpilot.governance.audit import AuditLog
from radpilot.results.outcome import SendOutcome, Verdict
from radpilot.store import Database
from radpilot.store.models import utcnow
from radpilot.store.models_pipeline import Delivery, DeliveryStatus

__all__ = [
    "DELIVERED",
    "DELIVERY_FAILED",
    "Claim",
    "DeliveryReport",
    "Settler",
    "aware",
    "check_file",
    "requeue_failed",
]

log = logging.getLogger(__name__)

#: Audit kinds appended for each delivery and each definitive refusal.
DELIVERED = "result.delivered"
DELIVERY_FAILED = "result.delivery_failed"
_ACTOR = "radpilot"
_TRIES = 8  # recording transactions and audit appends that lose a race are retried


@dataclass
class DeliveryReport:
    """What one pass did: rows claimed, and how each ended."""

    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    released: int = 0  # claimed but not tried (deadline); due again at once


@dataclass(frozen=True)
class Claim:
    """One claimed ``deliveries`` row with what sending its object needs."""

    delivery_id: int
    destination: str
    attempts: int
    object_id: int
    kind: str
    sop_instance_uid: str | None
    path: str
    sha256: str


def aware(value: dt.datetime) -> dt.datetime:
    """``value`` with UTC attached when naive (SQLite hands datetimes back naive)."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class Settler:
    """Writes outcomes to the ``deliveries`` rows and the audit log.

    Parameters
    ----------
    db
        The database holding the outbox and the audit log.
    settings
        ``delivery_retry_seconds`` (first backoff, doubling per attempt) and
        ``delivery_retry_max_seconds`` (its ceiling).
    """

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.audit = AuditLog(db)

    def record(
        self,
        group: list[Claim],
        outcomes: list[SendOutcome],
        now: dt.datetime | None,
        report: DeliveryReport,
    ) -> None:
        """Write ``outcomes`` (one per claim of ``group``) and add them to ``report``.

        ``now`` stands in for the clock (tests); ``None`` uses the time of writing.

        Raises
        ------
        sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError
            If the transaction kept failing; the rows then keep their lease and are sent
            again when it ends.
        """
        for attempt in range(_TRIES):
            tally = DeliveryReport()
            try:
                with self.db.session() as session:
                    at = aware(now) if now is not None else utcnow()
                    for item, outcome in zip(group, outcomes, strict=True):
                        self._apply(session, item, outcome, at, tally)
            except (OperationalError, IntegrityError):
                if attempt == _TRIES - 1:
                    raise  # the rows keep their lease and go out again when it ends
                time.sleep(0.05 * 2**attempt)
                continue
            break
        report.delivered += tally.delivered
        report.retrying += tally.retrying
        report.failed += tally.failed
        report.released += tally.released
        log.info(
            "%s: %d delivered, %d to retry, %d refused, %d not tried",
            group[0].destination,
            tally.delivered,
            tally.retrying,
            tally.failed,
            tally.released,
        )

    def _apply(
        self,
        session: Session,
        item: Claim,
        outcome: SendOutcome,
        at: dt.datetime,
        tally: DeliveryReport,
    ) -> None:
        attempts = item.attempts + 1
        error = outcome.reason[:2000] or None
        values: dict[str, Any]
        if outcome.verdict is Verdict.DELIVERED:
            values = {"status": DeliveryStatus.DELIVERED, "delivered_at": at, "attempts": attempts}
            values["last_error"] = error
        elif outcome.verdict is Verdict.REFUSED:
            values = {"status": DeliveryStatus.FAILED, "attempts": attempts, "last_error": error}
        elif outcome.verdict is Verdict.RETRY:
            values = {"attempts": attempts, "next_attempt_at": at + self._backoff(attempts)}
            values["last_error"] = error
        else:  # NOT_SENT: give the lease back; no attempt was made
            values = {"next_attempt_at": at}
        statement = (
            update(Delivery)
            .where(Delivery.id == item.delivery_id, Delivery.status == DeliveryStatus.PENDING)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if cast(CursorResult[Any], session.execute(statement)).rowcount != 1:
            log.warning("delivery %d was settled by another outbox meanwhile", item.delivery_id)
            return
        payload: dict[str, Any] = {
            "destination": item.destination,
            "object_id": item.object_id,
            "kind": item.kind,
            "attempts": attempts,
        }
        subject = item.sop_instance_uid or f"result_object:{item.object_id}"
        if outcome.verdict is Verdict.DELIVERED:
            tally.delivered += 1
            self._append(session, DELIVERED, subject, payload)
        elif outcome.verdict is Verdict.REFUSED:
            tally.failed += 1
            payload.update(status=outcome.status, reason=outcome.reason)
            self._append(session, DELIVERY_FAILED, subject, payload)
            log.warning(
                "%s refused object %s for good: %s",
                item.destination,
                ref(item.sop_instance_uid),
                outcome.reason,
            )
        elif outcome.verdict is Verdict.RETRY:
            tally.retrying += 1
        else:
            tally.released += 1

    def _append(self, session: Session, kind: str, subject: str, payload: dict[str, Any]) -> None:
        """Append inside the recording transaction; a lost race for ``seq`` is retried."""
        for attempt in range(_TRIES):
            try:
                self.audit.append(kind, _ACTOR, subject, payload, session=session)
                return
            except IntegrityError:
                if attempt == _TRIES - 1:
                    raise

    def _backoff(self, attempts: int) -> dt.timedelta:
        first = self.settings.delivery_retry_seconds
        seconds = min(first * 2 ** min(attempts - 1, 30), self.settings.delivery_retry_max_seconds)
        return dt.timedelta(seconds=seconds)


def requeue_failed(session: Session, destination: str | None = None) -> int:
    """Put failed deliveries (to ``destination``, or all) back in the queue, due now.

    For after the cause is fixed at the destination (e.g. a PACS taught a SOP class it
    refused). ``attempts`` and ``last_error`` are kept for the record.

    Returns
    -------
    int
        How many rows were requeued.

    Raises
    ------
    sqlalchemy.exc.SQLAlchemyError
        If the database refuses the update.
    """
    statement = update(Delivery).where(Delivery.status == DeliveryStatus.FAILED)
    if destination is not None:
        statement = statement.where(Delivery.destination == destination)
    values = {"status": DeliveryStatus.PENDING, "next_attempt_at": utcnow()}
    result = session.execute(
        statement.values(**values).execution_options(synchronize_session=False)
    )
    return int(cast(CursorResult[Any], result).rowcount)


def check_file(path: Path, sha256: str) -> SendOutcome | None:
    """``None`` when the file is there with the recorded hash; else what to do about it.

    A file that cannot be read is a retry (a volume may be remounted); one whose bytes
    changed is refused: radpilot never sends what it did not write.
    """
    digest = hashlib.sha256()
    try:
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:  # gone, or its volume is not mounted: it may come back
        return SendOutcome(
            path, Verdict.RETRY, f"the object's file cannot be read ({exc.strerror})"
        )
    if digest.hexdigest() != sha256:
        return SendOutcome(
            path,
            Verdict.REFUSED,
            "the object's file no longer matches its recorded SHA-256 (it was changed after "
            "it was written); regenerate the result instead of sending altered bytes",
        )
    return None
