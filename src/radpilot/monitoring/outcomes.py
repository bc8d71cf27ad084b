"""Outcomes that arrive later — the final report's text, or a label — as reads of the
study (reader ``outcome:<source>``), so that surveillance and validation count them like
any other reference label.

A study is found by its Study Instance UID or accession number. A report's text is
turned into present / absent by :func:`radpilot.monitoring.report_text.finding_in_report`;
an undetermined report is kept nowhere and counted. Every stored outcome and every refusal
(unknown study, nothing to judge) is audited, without the report's text.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from radpilot.governance.audit import AuditLog
from radpilot.monitoring.report_text import finding_in_report
from radpilot.store import Database
from radpilot.store.models import Read, Study

__all__ = ["Outcome", "OutcomeSummary", "import_csv", "record_outcome"]


@dataclass(frozen=True)
class Outcome:
    """One outcome: which study, and a label or a report text to judge."""

    study_instance_uid: str | None = None
    accession_number: str | None = None
    label: int | None = None
    text: str | None = None
    source: str = "report"
    at: dt.datetime | None = None


@dataclass
class OutcomeSummary:
    """What an import did."""

    stored: int = 0
    refused: Counter[str] = field(default_factory=Counter)


def record_outcome(
    db: Database, outcome: Outcome, finding: str = "pneumonia", actor: str = "radpilot"
) -> tuple[int | None, str | None]:
    """Store one outcome; ``(read id, None)`` or ``(None, why it was refused)``."""
    audit = AuditLog(db)
    key = outcome.study_instance_uid or outcome.accession_number or ""
    with db.session() as session:
        query = select(Study)
        if outcome.study_instance_uid:
            query = query.where(Study.study_instance_uid == outcome.study_instance_uid)
        elif outcome.accession_number:
            query = query.where(Study.accession_number == outcome.accession_number)
        else:
            query = query.where(Study.id.is_(None))
        studies = list(session.scalars(query.limit(2)))
        value = outcome.label
        if value is None and outcome.text:
            value = finding_in_report(outcome.text)
        why = None
        if not key:
            why = "no study instance UID or accession number"
        elif not studies:
            why = "no study with this UID or accession number"
        elif len(studies) > 1:
            why = "the accession number matches several studies"
        elif value is None:
            why = "the report neither affirms nor negates the finding"
        if why is not None:
            audit.append(
                "outcome.refused", actor, "outcome", {"source": outcome.source, "reason": why}
            )
            return None, why
        assert value is not None  # refused above otherwise
        study = studies[0]
        read = Read(
            study_pk=study.id,
            finding=finding,
            value=int(value),
            reader=f"outcome:{outcome.source}",
            read_at=outcome.at,
            source_file=None,
            attributes={"from_text": outcome.label is None},
        )
        session.add(read)
        session.flush()
        audit.append(
            "outcome.stored",
            actor,
            study.study_instance_uid,
            {
                "read": read.id,
                "source": outcome.source,
                "value": int(value),
                "from_text": outcome.label is None,
            },
            session=session,
        )
        session.commit()
        return read.id, None


def import_csv(db: Database, path: Path, actor: str) -> OutcomeSummary:
    """Import ``study_instance_uid`` or ``accession_number``, and ``label`` (0/1) or
    ``report_text``, with optional ``source`` and ``reported_at`` (ISO 8601).

    Raises
    ------
    ValueError
        If the header lacks a study key or both label and report_text.
    """
    summary = OutcomeSummary()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        names = set(reader.fieldnames or [])
        if not names & {"study_instance_uid", "accession_number"}:
            raise ValueError("the CSV needs a study_instance_uid or accession_number column")
        if not names & {"label", "report_text"}:
            raise ValueError("the CSV needs a label or report_text column")
        for row in reader:
            label_text = (row.get("label") or "").strip()
            if label_text not in ("", "0", "1"):
                summary.refused[f"label {label_text!r} is not 0 or 1"] += 1
                continue
            at_text = (row.get("reported_at") or "").strip()
            try:
                at = dt.datetime.fromisoformat(at_text) if at_text else None
            except ValueError:
                summary.refused["reported_at is not ISO 8601"] += 1
                continue
            outcome = Outcome(
                study_instance_uid=(row.get("study_instance_uid") or "").strip() or None,
                accession_number=(row.get("accession_number") or "").strip() or None,
                label=int(label_text) if label_text else None,
                text=row.get("report_text") or None,
                source=(row.get("source") or "report").strip() or "report",
                at=at,
            )
            stored, why = record_outcome(db, outcome, actor=actor)
            if stored is None:
                summary.refused[why or "refused"] += 1
            else:
                summary.stored += 1
    return summary
