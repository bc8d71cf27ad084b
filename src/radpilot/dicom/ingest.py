"""Importing DICOM from files, folders, DICOMDIR and zip archives into the intake."""

from __future__ import annotations

import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from radpilot.dicom.intake import Arrival, Intake
from radpilot.dicom.sources import Source
from radpilot.store.models import ReceiptOutcome

__all__ = ["IngestSummary", "as_part10", "ingest_sources"]

_DICM_OFFSET = 128


@dataclass
class IngestSummary:
    """Totals of one import; reasons are PHI-free."""

    imported: int = 0
    duplicates: int = 0
    conflicts: int = 0
    quarantined: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def seen(self) -> int:
        """Every source looked at."""
        return (
            self.imported
            + self.duplicates
            + self.conflicts
            + self.quarantined
            + sum(self.rejected.values())
            + sum(self.skipped.values())
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "seen": self.seen,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "quarantined": self.quarantined,
            "rejected": sum(self.rejected.values()),
            "rejected_reasons": dict(self.rejected.most_common()),
            "skipped": sum(self.skipped.values()),
            "skipped_reasons": dict(self.skipped.most_common()),
        }


def as_part10(data: bytes) -> bytes | None:
    """``data`` as a DICOM Part 10 file, or ``None`` if it is not DICOM at all.

    Files with the ``DICM`` prefix are returned unchanged. A bare data set without
    preamble and file meta (common from older systems) gets both prepended, its own
    bytes untouched; anything else is not DICOM.
    """
    if data[_DICM_OFFSET : _DICM_OFFSET + 4] == b"DICM":
        return data
    if len(data) < 8 or data[:2] not in (b"\x08\x00", b"\x00\x08"):
        return None  # a bare data set starts with a group 0008 element
    try:
        ds = pydicom.dcmread(BytesIO(data), force=True)
        sop_class, sop_instance = ds.get("SOPClassUID"), ds.get("SOPInstanceUID")
    except Exception:  # noqa: BLE001 - unparseable here means "not DICOM", counted by the caller
        return None
    if not sop_class or not sop_instance:
        return None
    implicit, little = ds.original_encoding
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian
        if implicit
        else ExplicitVRLittleEndian
        if little
        else ExplicitVRBigEndian
    )
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    buffer = DicomBytesIO()
    buffer.write(b"\x00" * _DICM_OFFSET + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return buffer.getvalue() + data


def ingest_sources(
    sources: Iterable[Source],
    intake: Intake,
    progress: Callable[[], None] | None = None,
) -> IngestSummary:
    """Offer each source to ``intake``; non-DICOM files are skipped and counted."""
    summary = IngestSummary()
    for source in sources:
        _one(source, intake, summary)
        if progress is not None:
            progress()
    return summary


def _one(source: Source, intake: Intake, summary: IngestSummary) -> None:
    try:
        raw = source.read()
    except OSError as exc:
        summary.rejected[f"unreadable file: {exc.strerror or type(exc).__name__}"] += 1
        return
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        # a damaged zip member (bad CRC, corrupt deflate stream, unsupported method)
        summary.rejected[f"unreadable zip member ({type(exc).__name__})"] += 1
        return
    if not raw:
        summary.skipped["empty file"] += 1
        return
    data = as_part10(raw)
    if data is None:
        summary.skipped["not DICOM"] += 1
        return
    result = intake.accept(Arrival(data=data, source="import", origin=source.origin))
    match result.outcome:
        case ReceiptOutcome.STORED:
            summary.imported += 1
        case ReceiptOutcome.DUPLICATE:
            summary.duplicates += 1
        case ReceiptOutcome.CONFLICT:
            summary.conflicts += 1
        case ReceiptOutcome.QUARANTINED:
            summary.quarantined += 1
        case _:
            summary.rejected[result.reason or "rejected"] += 1
