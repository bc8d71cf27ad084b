"""The append-only, hash-chained audit log.

Every AI result, delivery, model state change and human decision is appended here. Each
entry's hash covers its own fields and the previous entry's hash, so altering, removing or
reordering any entry breaks the chain from that point; ``radpilot audit verify`` names the
first broken entry. The database refuses UPDATE and DELETE on the table (migration 0002).

Appends are serialised by ``seq`` being unique: two writers racing for the same ``seq``
collide, and the loser retries on top of the winner.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from radpilot.store import Database
from radpilot.store.models import utcnow
from radpilot.store.models_pipeline import AuditEntry

__all__ = ["GENESIS", "AuditLog", "VerifyResult", "entry_hash"]

log = logging.getLogger(__name__)

#: ``prev_hash`` of the first entry.
GENESIS = "0" * 64
_RETRIES = 20
#: PostgreSQL advisory lock taken by every append (until its transaction ends), so that
#: concurrent writers queue for the next ``seq`` instead of colliding and retrying.
_LOCK_KEY = 0x7261647069  # "radpi"


def _timestamp(at: dt.datetime) -> str:
    at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
    return at.astimezone(dt.UTC).isoformat(timespec="microseconds")


def entry_hash(
    seq: int, at: dt.datetime, kind: str, actor: str, subject: str, payload: Any, prev: str
) -> str:
    """SHA-256 over the canonical JSON (sorted keys, no spaces) of one entry's fields."""
    body = {
        "seq": seq,
        "at": _timestamp(at),
        "kind": kind,
        "actor": actor,
        "subject": subject,
        "payload": payload,
        "prev": prev,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking the chain."""

    ok: bool
    entries: int
    first_broken_seq: int | None = None
    reason: str | None = None


class AuditLog:
    """Append to and verify the audit chain in ``db``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def append(
        self,
        kind: str,
        actor: str,
        subject: str,
        payload: dict[str, Any] | None = None,
        session: Session | None = None,
    ) -> AuditEntry:
        """Append one entry; inside ``session``'s transaction when one is given.

        ``payload`` must be JSON-serialisable and free of patient identifiers (use UIDs
        and database ids, never names).

        Raises
        ------
        sqlalchemy.exc.IntegrityError
            If a concurrent writer kept winning the race for the next ``seq``.
        """
        body = json.loads(json.dumps(payload or {}, sort_keys=True, default=str))
        if session is not None:
            with session.begin_nested():
                return self._append(session, kind, actor, subject, body)
        for attempt in range(_RETRIES):
            try:
                with self.db.session() as own:
                    entry = self._append(own, kind, actor, subject, body)
                return entry
            except IntegrityError:
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _append(
        session: Session, kind: str, actor: str, subject: str, payload: dict[str, Any]
    ) -> AuditEntry:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        last = session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)).first()
        seq = 1 if last is None else last.seq + 1
        prev = GENESIS if last is None else last.entry_hash
        at = utcnow()
        entry = AuditEntry(
            seq=seq,
            at=at,
            kind=kind,
            actor=actor,
            subject=subject,
            payload=payload,
            prev_hash=prev,
            entry_hash=entry_hash(seq, at, kind, actor, subject, payload, prev),
        )
        session.add(entry)
        session.flush()
        return entry

    def entries(self, batch: int = 1000) -> Iterator[AuditEntry]:
        """Every entry in chain order, read in batches."""
        after = 0
        while True:
            with self.db.session() as session:
                rows = list(
                    session.scalars(
                        select(AuditEntry)
                        .where(AuditEntry.seq > after)
                        .order_by(AuditEntry.seq)
                        .limit(batch)
                    )
                )
            if not rows:
                return
            yield from rows
            after = rows[-1].seq

    def verify(self) -> VerifyResult:
        """Walk the chain; report the first entry whose hash or link does not hold."""
        prev, expected_seq, count = GENESIS, 1, 0
        for entry in self.entries():
            count += 1
            if entry.seq != expected_seq:
                return VerifyResult(
                    False, count, entry.seq, f"expected entry {expected_seq}, found {entry.seq}"
                )
            if entry.prev_hash != prev:
                return VerifyResult(
                    False, count, entry.seq, "its link to the previous entry does not match"
                )
            actual = entry_hash(
                entry.seq,
                entry.at,
                entry.kind,
                entry.actor,
                entry.subject,
                entry.payload,
                entry.prev_hash,
            )
            if actual != entry.entry_hash:
                return VerifyResult(
                    False, count, entry.seq, "its content does not match its hash (altered)"
                )
            prev, expected_seq = entry.entry_hash, expected_seq + 1
        return VerifyResult(True, count)
