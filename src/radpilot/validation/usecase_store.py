"""Use cases declared in this installation: each version kept as written, never edited.

Adding a file whose use case name exists with other content makes a new version; adding
the same content again changes nothing. Every addition is audited.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import func, select

from radpilot.core.errors import ConfigurationError
from radpilot.core.yamlfile import parse_yaml_model
from radpilot.governance.audit import AuditLog
from radpilot.store import Database
from radpilot.store.models_validation import UseCaseRecord
from radpilot.validation.usecase import UseCase

__all__ = ["add_use_case", "get_use_case", "list_use_cases"]


def add_use_case(db: Database, path: Path, added_by: str) -> tuple[UseCaseRecord, bool]:
    """Store the use case in ``path``; the record and whether it was new.

    Raises
    ------
    radpilot.core.errors.ManifestError
        If the file cannot be read or does not validate (line and key named).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read ({exc})") from exc
    case = parse_yaml_model(text, UseCase, str(path))
    digest = hashlib.sha256(text.encode()).hexdigest()
    with db.session() as session:
        same = session.scalars(
            select(UseCaseRecord).where(
                UseCaseRecord.name == case.name, UseCaseRecord.sha256 == digest
            )
        ).first()
        if same is not None:
            session.expunge(same)
            return same, False
        latest = session.scalar(
            select(func.max(UseCaseRecord.version)).where(UseCaseRecord.name == case.name)
        )
        record = UseCaseRecord(
            name=case.name, version=(latest or 0) + 1, text=text, sha256=digest,
            content=case.model_dump(mode="json", by_alias=True), added_by=added_by,
        )  # fmt: skip
        session.add(record)
        session.flush()
        AuditLog(db).append(
            "usecase.added", added_by, f"{record.name}:{record.version}",
            {"sha256": digest, "criteria": [c.describe() for c in case.success]},
            session=session,
        )  # fmt: skip
        session.flush()
        session.expunge(record)
    return record, True


def get_use_case(
    db: Database, name: str, version: int | None = None
) -> tuple[UseCaseRecord, UseCase]:
    """The record and the parsed use case (the latest version unless one is named).

    Raises
    ------
    LookupError
        If no such use case (version) is stored.
    """
    with db.session() as session:
        query = select(UseCaseRecord).where(UseCaseRecord.name == name)
        if version is not None:
            query = query.where(UseCaseRecord.version == version)
        record = session.scalars(query.order_by(UseCaseRecord.version.desc())).first()
        if record is None:
            which = name if version is None else f"{name}:{version}"
            raise LookupError(f"no use case {which!r}; add it with `radpilot usecases add`")
        session.expunge(record)
    return record, parse_yaml_model(record.text, UseCase, f"use case {name}")


def list_use_cases(db: Database) -> list[UseCaseRecord]:
    """Every stored version, by name and version."""
    with db.session() as session:
        rows = list(
            session.scalars(
                select(UseCaseRecord).order_by(UseCaseRecord.name, UseCaseRecord.version)
            )
        )
        for row in rows:
            session.expunge(row)
    return rows
