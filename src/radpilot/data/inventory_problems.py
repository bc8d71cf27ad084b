"""The problems an inventory reports: what would trip a model, a validation or a PACS.

Each problem is counted with SQL aggregates and names a few examples by database id and
:func:`~radpilot.core.logging.ref` digest only. Every kind in :data:`PROBLEM_KINDS` is always
reported, with ``count`` 0 when the archive is clean, so that reports compare over time.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from typing import Any, TypeVar

from pydicom.uid import UID
from sqlalchemy import ColumnElement, Select, SQLColumnExpression, and_, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from radpilot.core.logging import ref
from radpilot.store.models import Instance, Receipt, ReceiptOutcome, Series, Study

__all__ = [
    "COMMON_TRANSFER_SYNTAXES",
    "FUNCTIONAL_GROUP_SOP_CLASSES",
    "PROBLEM_KINDS",
    "SPACING_MODALITIES",
    "find_problems",
    "reason_group",
    "valid_date",
    "valid_spacing",
]

#: Transfer syntaxes every current PACS, viewer and radpilot's decoders handle. Anything
#: else (JPEG extended/hierarchical, HTJ2K, JPEG XL, MPEG/HEVC video, private) is unusual.
COMMON_TRANSFER_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2",  # Implicit VR Little Endian
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
        "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still in old archives)
        "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless, Selection Value 1
        "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
        "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless Only
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.5",  # RLE Lossless
    }
)

#: Modalities whose images carry Pixel Spacing or Imager Pixel Spacing at the top level
#: and whose models need physical scale. US (ultrasound regions), SC/OT, SEG, SR and
#: others are not checked.
SPACING_MODALITIES = frozenset(
    {"CT", "MR", "PT", "NM", "CR", "DX", "MG", "RF", "XA", "IO", "PX", "RG"}
)

#: Multi-frame SOP classes that keep Pixel Spacing in functional group sequences, which
#: the index does not read: a missing top-level value is expected there.
FUNCTIONAL_GROUP_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
        "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT
        "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR
        "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color
        "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR
        "1.2.840.10008.5.1.4.1.1.128.1",  # Legacy Converted Enhanced PET
        "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET
        "1.2.840.10008.5.1.4.1.1.12.1.1",  # Enhanced XA
        "1.2.840.10008.5.1.4.1.1.12.2.1",  # Enhanced XRF
        "1.2.840.10008.5.1.4.1.1.13.1.1",  # X-Ray 3D Angiographic
        "1.2.840.10008.5.1.4.1.1.13.1.2",  # X-Ray 3D Craniofacial
        "1.2.840.10008.5.1.4.1.1.13.1.3",  # Breast Tomosynthesis
        "1.2.840.10008.5.1.4.1.1.13.1.4",  # Breast Projection X-Ray, For Presentation
        "1.2.840.10008.5.1.4.1.1.13.1.5",  # Breast Projection X-Ray, For Processing
        "1.2.840.10008.5.1.4.1.1.30",  # Parametric Map
        "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    }
)

#: (kind, severity, unit, description) in the order reports list them.
PROBLEM_KINDS: tuple[tuple[str, str, str, str], ...] = (
    ("rejected_files", "error", "receipts", "files or objects refused at intake"),
    (
        "conflicts",
        "error",
        "receipts",
        "different object under an archived SOP Instance UID (kept aside)",
    ),
    ("quarantined", "warning", "receipts", "held back for review (e.g. burned-in text)"),
    (
        "missing_pixel_spacing",
        "warning",
        "instances",
        "images without Pixel Spacing or Imager Pixel Spacing",
    ),
    (
        "invalid_pixel_spacing",
        "warning",
        "instances",
        "pixel spacing that is not two positive numbers",
    ),
    (
        "unusual_transfer_syntax",
        "warning",
        "instances",
        "encodings outside the common set (see docs/inventory.md)",
    ),
    ("missing_modality", "warning", "series", "series without Modality"),
    ("invalid_study_date", "warning", "studies", "Study Date that is not a valid YYYYMMDD"),
    ("burned_in_annotation", "warning", "instances", "Burned In Annotation is YES"),
    ("missing_study_date", "info", "studies", "studies without Study Date"),
    ("missing_manufacturer", "info", "series", "series without Manufacturer"),
    ("duplicates", "info", "receipts", "identical copies of archived instances (ignored)"),
    ("skipped_files", "info", "receipts", "non-DICOM files skipped at import"),
)


def valid_date(text: str | None) -> dt.date | None:
    """A DICOM DA value (``YYYYMMDD``) as a date, or ``None`` if absent or invalid."""
    if text is None or len(text) != 8 or not text.isdigit():
        return None
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def valid_spacing(text: str) -> bool:
    """Whether ``text`` is two finite, positive numbers separated by a backslash."""
    parts = text.split("\\")
    if len(parts) != 2:
        return False
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        return False
    return all(math.isfinite(n) and n > 0 for n in numbers)


def reason_group(reason: str | None) -> str:
    """A rejection reason without its details (the text before the first colon)."""
    if not reason:
        return "(no reason recorded)"
    return reason.split(":", 1)[0].strip()[:120] or "(no reason recorded)"


def find_problems(session: Session, *, examples: int = 5) -> list[dict[str, Any]]:
    """Count every kind in :data:`PROBLEM_KINDS` and name up to ``examples`` rows of each.

    Raises
    ------
    sqlalchemy.exc.SQLAlchemyError
        If the database cannot be queried.
    """
    found: dict[str, tuple[int, list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for kind, outcome in (
        ("rejected_files", ReceiptOutcome.REJECTED),
        ("conflicts", ReceiptOutcome.CONFLICT),
        ("quarantined", ReceiptOutcome.QUARANTINED),
        ("duplicates", ReceiptOutcome.DUPLICATE),
        ("skipped_files", ReceiptOutcome.SKIPPED),
    ):
        found[kind] = _receipts(session, outcome, examples)

    image = and_(Instance.rows.is_not(None), Instance.columns.is_not(None))
    no_spacing = and_(
        image,
        Instance.pixel_spacing.is_(None),
        Series.modality.in_(sorted(SPACING_MODALITIES)),
        Instance.sop_class_uid.not_in(sorted(FUNCTIONAL_GROUP_SOP_CLASSES)),
    )
    found["missing_pixel_spacing"] = _rows(session, Instance, no_spacing, Series.modality, examples)
    spacings = session.execute(
        select(Instance.pixel_spacing)
        .where(Instance.pixel_spacing.is_not(None))
        .group_by(Instance.pixel_spacing)
    ).scalars()
    bad_spacings = sorted(s for s in spacings if s is not None and not valid_spacing(s))
    found["invalid_pixel_spacing"] = (
        _rows(
            session,
            Instance,
            Instance.pixel_spacing.in_(bad_spacings),
            Instance.pixel_spacing,
            examples,
        )
        if bad_spacings
        else (0, [], [])
    )
    unusual = Instance.transfer_syntax_uid.not_in(sorted(COMMON_TRANSFER_SYNTAXES))
    count, breakdown, refs = _rows(
        session, Instance, unusual, Instance.transfer_syntax_uid, examples
    )
    for entry in breakdown:
        entry["value"] = f"{UID(entry['value']).name} ({entry['value']})"
    found["unusual_transfer_syntax"] = (count, breakdown, refs)
    found["missing_modality"] = _rows(session, Series, Series.modality.is_(None), None, examples)
    found["missing_manufacturer"] = _rows(
        session, Series, Series.manufacturer.is_(None), Series.modality, examples
    )
    found["burned_in_annotation"] = _rows(
        session,
        Instance,
        func.upper(func.trim(Instance.burned_in_annotation)) == "YES",
        Series.modality,
        examples,
    )
    found["missing_study_date"] = _rows(session, Study, Study.study_date.is_(None), None, examples)
    dates = session.execute(
        select(Study.study_date).where(Study.study_date.is_not(None)).group_by(Study.study_date)
    ).scalars()
    bad_dates = sorted(d for d in dates if d is not None and valid_date(d) is None)
    found["invalid_study_date"] = (
        _rows(session, Study, Study.study_date.in_(bad_dates), None, examples)
        if bad_dates
        else (0, [], [])
    )

    return [
        {
            "kind": kind,
            "severity": severity,
            "unit": unit,
            "description": description,
            "count": found[kind][0],
            "breakdown": found[kind][1],
            "examples": found[kind][2],
        }
        for kind, severity, unit, description in PROBLEM_KINDS
    ]


_S = TypeVar("_S", bound="Select[*tuple[Any, ...]]")

_UID_OF: dict[type[Any], InstrumentedAttribute[str]] = {
    Instance: Instance.sop_instance_uid,
    Series: Series.series_instance_uid,
    Study: Study.study_instance_uid,
}


def _rows(
    session: Session,
    table: type[Instance] | type[Series] | type[Study],
    condition: ColumnElement[bool],
    by: SQLColumnExpression[Any] | None,
    examples: int,
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    """Count of ``table`` rows matching ``condition``, broken down ``by``, with examples."""

    def scoped(stmt: _S) -> _S:
        if table is Instance:
            stmt = stmt.join(Series, Instance.series_pk == Series.id)
        return stmt.where(condition)

    count = int(session.scalar(scoped(select(func.count(table.id)).select_from(table))) or 0)
    breakdown: list[dict[str, Any]] = []
    if by is not None and count:
        stmt = scoped(select(by, func.count(table.id)).select_from(table)).group_by(by)
        breakdown = sorted(
            ({"value": value, "count": int(n)} for value, n in session.execute(stmt)),
            key=lambda e: (-e["count"], str(e["value"])),
        )
    uid = _UID_OF[table]
    stmt = scoped(select(table.id, uid).select_from(table)).order_by(table.id).limit(examples)
    refs = [{"id": int(pk), "ref": ref(value)} for pk, value in session.execute(stmt)]
    return count, breakdown, refs


def _receipts(
    session: Session, outcome: ReceiptOutcome, examples: int
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    """Receipts with ``outcome``; reasons grouped without their details."""
    reasons: Counter[str] = Counter()
    for reason, n in session.execute(
        select(Receipt.reason, func.count(Receipt.id))
        .where(Receipt.outcome == outcome)
        .group_by(Receipt.reason)
    ):
        reasons[reason_group(reason)] += int(n)
    refs = [
        {"id": int(pk), "ref": ref(uid) if uid else None}
        for pk, uid in session.execute(
            select(Receipt.id, Receipt.sop_instance_uid)
            .where(Receipt.outcome == outcome)
            .order_by(Receipt.id)
            .limit(examples)
        )
    ]
    breakdown = [
        {"value": r, "count": n}
        for r, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    ]
    return sum(reasons.values()), breakdown, refs
