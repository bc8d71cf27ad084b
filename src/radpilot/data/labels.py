"""Reference labels and reader reads from CSV files, attached to indexed studies.

Each valid row becomes one :class:`~radpilot.store.models.Read` (finding, 0/1 value,
reader, read time, source file, the row's other columns) on the study it names; several
reads per study (readers, times, findings) are the normal case, and adjudication can be
added later on top of them. Other columns also become
:class:`~radpilot.store.models.CaseAttribute` rows for subgroup analyses.

Importing is idempotent: a read is identified by (study, finding, reader, read time), and
one already stored is counted as *already present*, never duplicated nor overwritten.
Bad rows are reported by row number with a PHI-free reason; the good rows are imported,
unless ``strict`` asks for all or nothing. The file format is in ``docs/labels.md``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from radpilot.core.errors import ConfigurationError
from radpilot.data.labels_csv import (
    LabelFileError,
    ParsedRow,
    RowError,
    normalise_finding,
    parse_row,
    read_table,
    timezone_of,
)
from radpilot.data.labels_match import RowIssue, chunks, match_rows
from radpilot.store.models import CaseAttribute, Read, utcnow

__all__ = [
    "LabelFileError",
    "LabelImportOptions",
    "LabelImportSummary",
    "RowIssue",
    "import_labels",
]


@dataclass(frozen=True, slots=True)
class LabelImportOptions:
    """How ``radpilot labels import`` reads a file.

    Attributes
    ----------
    finding
        The finding a 0/1 ``label`` (or a "normal" label) is about, when the file has no
        ``finding`` column.
    reader
        The reader id of rows without a ``reader`` cell.
    timezone
        IANA zone of ``read_at`` values written without an offset.
    strict
        Import nothing unless every row is importable.
    dry_run
        Check and count, but write nothing.
    """

    finding: str = "finding"
    reader: str = "reference"
    timezone: str = "UTC"
    strict: bool = False
    dry_run: bool = False


@dataclass
class LabelImportSummary:
    """What an import did (or, when not ``committed``, would have done)."""

    file: str
    strict: bool = False
    dry_run: bool = False
    committed: bool = False
    rows: int = 0
    new_reads: int = 0
    already_present: int = 0
    studies: int = 0
    attributes_set: int = 0
    attributes_updated: int = 0
    by_finding: Counter[str] = field(default_factory=Counter)
    readers: Counter[str] = field(default_factory=Counter)
    attribute_columns: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    varying_attributes: set[str] = field(default_factory=set)
    issues: list[RowIssue] = field(default_factory=list)

    @property
    def imported(self) -> int:
        """Reads written by this import (0 when nothing was committed)."""
        return self.new_reads if self.committed else 0

    def count(self, kind: str) -> int:
        """How many rows have an issue of ``kind``."""
        return sum(1 for issue in self.issues if issue.kind == kind)

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data (layout in ``docs/labels.md``)."""
        return {
            "file": self.file,
            "strict": self.strict,
            "dry_run": self.dry_run,
            "committed": self.committed,
            "rows": self.rows,
            "imported": self.imported,
            "would_import": self.new_reads,
            "already_present": self.already_present,
            "unmatched": self.count("unmatched"),
            "ambiguous": self.count("ambiguous"),
            "invalid": self.count("invalid"),
            "conflicts": self.count("conflict"),
            "studies": self.studies,
            "attributes_set": self.attributes_set,
            "attributes_updated": self.attributes_updated,
            "by_finding": dict(sorted(self.by_finding.items())),
            "readers": dict(sorted(self.readers.items())),
            "attribute_columns": self.attribute_columns,
            "ignored_columns": self.ignored_columns,
            "varying_attributes": sorted(self.varying_attributes),
            "issues": [asdict(issue) for issue in self.issues],
        }


def import_labels(
    session: Session, path: Path, options: LabelImportOptions | None = None
) -> LabelImportSummary:
    """Import one label CSV into the studies of the index.

    Parameters
    ----------
    session
        A session on a migrated database; the caller commits (``Database.session()``).
    path
        The CSV file (format in ``docs/labels.md``).
    options
        Defaults for cells the file leaves out, and strict or dry-run mode.

    Returns
    -------
    LabelImportSummary
        Counts, and every row not imported with its row number and reason.

    Raises
    ------
    LabelFileError
        If the file as a whole cannot be read (encoding, header, required columns).
    ConfigurationError
        If an option is invalid (time zone, finding name).
    sqlalchemy.exc.SQLAlchemyError
        If the database fails.
    """
    options = options or LabelImportOptions()
    zone = timezone_of(options.timezone)
    try:
        default_finding = normalise_finding(options.finding)
    except RowError as exc:
        raise ConfigurationError(f"--finding: {exc}") from exc
    if not default_finding or not options.reader.strip():
        raise ConfigurationError("--finding and --reader must not be empty")
    table = read_table(path)
    summary = LabelImportSummary(
        path.name,
        options.strict,
        options.dry_run,
        attribute_columns=table.attributes,
        ignored_columns=table.ignored,
    )
    parsed: list[ParsedRow] = []
    for raw in table.rows:
        summary.rows += 1
        try:
            parsed.append(
                parse_row(
                    raw,
                    default_finding=default_finding,
                    default_reader=options.reader.strip(),
                    zone=zone,
                    attributes=table.attributes,
                )
            )
        except RowError as exc:
            summary.issues.append(RowIssue(raw.number, "invalid", str(exc)))
    matched = match_rows(session, parsed, summary.issues)
    summary.studies = len({pk for _row, pk in matched})
    reads, accepted = _plan_reads(session, matched, summary, path.name)
    inserts, updates = _plan_attributes(session, accepted, summary)
    summary.issues.sort(key=lambda issue: issue.row)
    if options.dry_run or (options.strict and summary.issues):
        return summary
    session.add_all(reads)
    session.add_all(inserts)
    for attribute, value in updates:
        attribute.value = value
    session.flush()
    summary.committed = True
    return summary


def _utc_naive(value: dt.datetime | None) -> dt.datetime | None:
    """Times as SQLite returns them (naive UTC), so stored and new reads compare."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def _plan_reads(
    session: Session,
    matched: list[tuple[ParsedRow, int]],
    summary: LabelImportSummary,
    source: str,
) -> tuple[list[Read], list[tuple[ParsedRow, int]]]:
    """New reads to add, and the rows imported or already present (not conflicting)."""
    existing: dict[tuple[int, str, str, dt.datetime | None], int] = {}
    for chunk in chunks(pk for _row, pk in matched):
        stmt = select(Read.study_pk, Read.finding, Read.reader, Read.read_at, Read.value).where(
            Read.study_pk.in_(chunk)
        )
        for study_pk, finding, reader, read_at, value in session.execute(stmt):
            existing[(study_pk, finding, reader, _utc_naive(read_at))] = value
    now = utcnow()
    reads: list[Read] = []
    accepted: list[tuple[ParsedRow, int]] = []
    for row, pk in matched:
        key = (pk, row.finding, row.reader, _utc_naive(row.read_at))
        if key in existing and existing[key] != row.value:
            summary.issues.append(
                RowIssue(
                    row.row,
                    "conflict",
                    "a read of this finding by this reader at this time is already stored "
                    "with the other value; reads are never overwritten",
                )
            )
            continue
        accepted.append((row, pk))
        summary.by_finding[row.finding] += 1
        summary.readers[row.reader] += 1
        if key in existing:
            summary.already_present += 1
            continue
        existing[key] = row.value
        reads.append(
            Read(
                study_pk=pk,
                finding=row.finding,
                value=row.value,
                reader=row.reader,
                read_at=row.read_at,
                imported_at=now,
                source_file=source[-512:],
                attributes=dict(row.attributes),
            )
        )
    summary.new_reads = len(reads)
    return reads, accepted


def _plan_attributes(
    session: Session, accepted: list[tuple[ParsedRow, int]], summary: LabelImportSummary
) -> tuple[list[CaseAttribute], list[tuple[CaseAttribute, str]]]:
    """Case attributes to insert, and stored ones to update (upsert by study and name)."""
    wanted: dict[tuple[int, str], str] = {}
    for row, pk in accepted:
        for name, value in row.attributes.items():
            key = (pk, name[:128])
            if key in wanted and wanted[key] != value:
                summary.varying_attributes.add(key[1])
            wanted[key] = value  # the last row of the file wins
    stored: dict[tuple[int, str], CaseAttribute] = {}
    for chunk in chunks(pk for pk, _name in wanted):
        stmt = select(CaseAttribute).where(CaseAttribute.study_pk.in_(chunk))
        for attribute in session.scalars(stmt):
            stored[(attribute.study_pk, attribute.name)] = attribute
    inserts: list[CaseAttribute] = []
    updates: list[tuple[CaseAttribute, str]] = []
    for (pk, name), value in wanted.items():
        current = stored.get((pk, name))
        if current is None:
            inserts.append(CaseAttribute(study_pk=pk, name=name, value=value))
        elif current.value != value:
            updates.append((current, value))
    summary.attributes_set, summary.attributes_updated = len(inserts), len(updates)
    return inserts, updates
