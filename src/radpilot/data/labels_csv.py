"""Reading label CSV files: columns, label values, reader ids and read times.

This module only parses; :mod:`radpilot.data.labels` finds the studies and stores reads.
Nothing here echoes a cell's content in a message: reasons name the column and the rule,
so that import summaries can be shown and logged without patient data.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from radpilot.core.errors import ConfigurationError, RadpilotError

__all__ = [
    "IDENTIFIERS",
    "LabelFileError",
    "ParsedRow",
    "RawRow",
    "RowError",
    "Table",
    "normalise_finding",
    "parse_binary",
    "parse_read_at",
    "parse_row",
    "read_table",
    "timezone_of",
]

#: Columns that find the study, in order of precedence.
IDENTIFIERS = ("study_instance_uid", "accession_number", "patient_id")
_ALIASES = {
    "studyinstanceuid": "study_instance_uid",
    "studyuid": "study_instance_uid",
    "accessionnumber": "accession_number",
    "accession": "accession_number",
    "patientid": "patient_id",
    "pseudonym": "patient_id",
    "patientpseudonym": "patient_id",
    "studydate": "study_date",
    "label": "label",
    "finding": "finding",
    "value": "value",
    "reader": "reader",
    "readerid": "reader",
    "readat": "read_at",
}
#: Columns that would put direct identifiers into case attributes: never stored.
_REFUSED = {"patientname", "name", "patientbirthdate", "birthdate", "dateofbirth", "dob",
            "address", "patientaddress", "phone", "telephone", "email", "mrn",
            "medicalrecordnumber", "ssn", "socialsecuritynumber", "nhsnumber"}  # fmt: skip
_TRUE = {"1", "1.0", "true", "yes", "y", "positive", "pos", "present"}
_FALSE = {"0", "0.0", "false", "no", "n", "negative", "neg", "absent"}
_UNKNOWN = {"?", "-", "unknown", "uncertain", "maybe", "equivocal", "n/a", "na", "nan", "null"}
_NORMAL = {"normal", "none", "no finding", "no findings", "no_finding", "nofinding"}
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class LabelFileError(RadpilotError):
    """The label file as a whole cannot be imported (encoding, header, columns)."""


class RowError(ValueError):
    """One row cannot be imported; the message is PHI-free and says how to fix it."""


@dataclass(frozen=True, slots=True)
class RawRow:
    """A data row: its spreadsheet row number (the header is row 1) and non-empty cells."""

    number: int
    cells: dict[str, str]
    error: str | None = None


@dataclass
class Table:
    """A label file's header (canonical names) and its data rows."""

    columns: list[str]  # canonical name for standard columns, header text otherwise
    rows: Iterator[RawRow]
    attributes: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ParsedRow:
    """One valid row: how to find the study and the read it carries."""

    row: int
    identifiers: dict[str, str]
    study_date: str | None
    finding: str
    value: int
    reader: str
    read_at: dt.datetime | None
    attributes: dict[str, str]


def read_table(path: Path) -> Table:
    """Open a label CSV (UTF-8, with or without BOM; comma, semicolon or tab separated).

    Raises
    ------
    LabelFileError
        If the file cannot be read, is not UTF-8, has no header, repeats a column, or
        lacks an identifier or label column.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelFileError(f"{path.name} is not UTF-8 text; save it as 'CSV UTF-8'") from exc
    except OSError as exc:
        raise LabelFileError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    first = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if not header or not any(cell.strip() for cell in header):
        raise LabelFileError(f"{path.name} is empty; the first row must name the columns")
    columns: list[str] = []
    attributes: list[str] = []
    ignored: list[str] = []
    for index, cell in enumerate(header, start=1):
        name = cell.strip()
        key = re.sub(r"[^a-z0-9]", "", name.lower())
        canonical = _ALIASES.get(key, name)
        if not name:
            ignored.append(f"column {index} (no name)")
        elif key in _REFUSED:
            ignored.append(name)
        elif canonical in columns:
            raise LabelFileError(f"{path.name}: column {name!r} appears twice in the header")
        elif canonical == name and key not in _ALIASES:
            attributes.append(name)
        columns.append("" if not name or key in _REFUSED else canonical)
    if not set(IDENTIFIERS) & set(columns):
        raise LabelFileError(
            f"{path.name} has no study_instance_uid, accession_number or patient_id column "
            f"(found: {', '.join(c for c in columns if c) or 'none'})"
        )
    if not {"label", "finding"} & set(columns):
        raise LabelFileError(f"{path.name} has no label or finding column")
    return Table(columns, _rows(reader, columns), attributes, ignored)


def _rows(reader: Iterator[list[str]], columns: list[str]) -> Iterator[RawRow]:
    for number, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue  # blank lines, e.g. at the end of a spreadsheet export
        values = {
            name: cell.strip()
            for name, cell in zip(columns, cells, strict=False)
            if name and cell.strip()
        }
        if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns) :]):
            yield RawRow(number, values, "the row has more cells than the header has columns")
        else:
            yield RawRow(number, values)


def parse_binary(text: str) -> int | None:
    """1 or 0 for the usual spellings of yes/no (``1``, ``true``, ``positive``...), else None."""
    lowered = text.strip().lower()
    return 1 if lowered in _TRUE else 0 if lowered in _FALSE else None


def normalise_finding(text: str) -> str:
    """Finding names compare case-insensitively with runs of spaces as ``_``.

    Raises
    ------
    RowError
        If the name is longer than 128 characters.
    """
    name = re.sub(r"\s+", "_", text.strip().casefold())
    if len(name) > 128:
        raise RowError("the finding name is longer than 128 characters")
    return name


def parse_read_at(text: str, zone: dt.tzinfo, column: str = "read_at") -> dt.datetime:
    """ISO 8601 or DICOM (``YYYYMMDD[HHMMSS]``) date/time; naive times are in ``zone``.

    Returns
    -------
    datetime.datetime
        The time in UTC (a date alone is midnight in ``zone``).

    Raises
    ------
    RowError
        If the text is not such a date or time.
    """
    value = text.strip()
    try:
        if re.fullmatch(r"\d{8}(\d{6}(\.\d{1,6})?)?", value):
            fmt = "%Y%m%d%H%M%S.%f" if "." in value else "%Y%m%d%H%M%S"
            parsed = dt.datetime.strptime(value, fmt if len(value) > 8 else "%Y%m%d")
        else:
            parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise RowError(f"{column} is not a date/time (write e.g. 2024-03-01T14:30)") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(dt.UTC)


def timezone_of(name: str) -> dt.tzinfo:
    """The IANA time zone ``name`` (e.g. ``Europe/Paris``).

    Raises
    ------
    ConfigurationError
        If there is no such zone.
    """
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(
            f"unknown time zone {name!r}; write e.g. UTC or Europe/Berlin"
        ) from exc


def _study_date(text: str) -> str:
    digits = text.strip().replace("-", "")
    try:
        if len(digits) != 8 or not digits.isdigit():
            raise ValueError(digits)
        dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError as exc:
        raise RowError("study_date is not a date (write e.g. 2024-03-01)") from exc
    return digits


def _label(cells: dict[str, str], default_finding: str) -> tuple[str, int]:
    name = normalise_finding(cells["finding"]) if "finding" in cells else None
    value: int | None = None
    label = cells.get("label")
    if label is not None:
        binary = parse_binary(label)
        if binary is not None:
            value = binary
        elif label.strip().lower() in _NORMAL:
            value = 0
        elif _NUMBER.match(label):
            raise RowError("label is a number other than 0 or 1 (scores are not labels)")
        elif label.strip().lower() in _UNKNOWN:
            raise RowError("label says the finding is unknown; leave such cases out")
        else:
            named = normalise_finding(label)
            if name is not None and name != named:
                raise RowError("label names a different finding than the finding column")
            name, value = named, 1
    if "value" in cells:
        given = parse_binary(cells["value"])
        if given is None:
            raise RowError("value must be 0 or 1 (or yes/no, positive/negative)")
        if value is not None and label is not None and given != value:
            raise RowError("label and value disagree")
        value = given
    if value is None and name is None:
        raise RowError("no label: fill the label column (0/1 or a finding name)")
    return name or default_finding, 1 if value is None else value


def parse_row(
    raw: RawRow,
    *,
    default_finding: str,
    default_reader: str,
    zone: dt.tzinfo,
    attributes: list[str],
) -> ParsedRow:
    """Check one data row and turn it into a :class:`ParsedRow`.

    Raises
    ------
    RowError
        If the row lacks an identifier or a label, or a value is malformed.
    """
    if raw.error is not None:
        raise RowError(raw.error)
    cells = raw.cells
    identifiers = {key: cells[key] for key in IDENTIFIERS if key in cells}
    if not identifiers:
        raise RowError("no study_instance_uid, accession_number or patient_id in this row")
    if any(len(v) > 64 for v in identifiers.values()):
        raise RowError("an identifier is longer than DICOM allows (64 characters)")
    study_date = _study_date(cells["study_date"]) if "study_date" in cells else None
    finding, value = _label(cells, default_finding)
    reader = cells.get("reader", default_reader)
    if len(reader) > 128:
        raise RowError("reader is longer than 128 characters")
    read_at = parse_read_at(cells["read_at"], zone) if "read_at" in cells else None
    extra = {name: cells[name] for name in attributes if name in cells}
    return ParsedRow(raw.number, identifiers, study_date, finding, value, reader, read_at, extra)
