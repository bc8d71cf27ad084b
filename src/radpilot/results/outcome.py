"""What became of one object sent to one destination, and how DIMSE statuses are judged.

Every failure is sorted into *retry* (the destination may take the object later: it is
down, busy, rejects the association or times out) or *refused* (the destination said no to
this object for good, e.g. DIMSE status 0xA9xx or 0xCxxx). The outbox keeps the first
pending and marks the second failed. Statuses follow PS3.4 Annex B.2.3 (C-STORE) and PS3.7
Annex C; STOW-RS failure reasons use the same codes (PS3.18 Table I.2-3).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info

__all__ = ["SendOutcome", "Sendable", "Sender", "Verdict", "classify_status", "inspect", "load"]


class Verdict(enum.StrEnum):
    """What became of one file."""

    DELIVERED = "delivered"  # success, or a warning (0xB000-0xBFFF, 0x0001, 0x0107, 0x0116)
    RETRY = "retry"  # not taken now; may be taken later
    REFUSED = "refused"  # refused for good; sending it again would fail again
    NOT_SENT = "not_sent"  # not tried (the deadline came first); no attempt counted


@dataclass(frozen=True)
class SendOutcome:
    """The fate of one file: verdict, DIMSE status (or STOW failure reason) and why."""

    path: Path
    verdict: Verdict
    reason: str = ""
    status: int | None = None


class Sender(Protocol):
    """What the outbox needs of a sender."""

    def send(
        self, paths: Sequence[Path], *, deadline: float | None = None
    ) -> list[SendOutcome]: ...


#: (first, last, verdict, meaning): PS3.4 B.2.3 and PS3.7 C; first match wins.
_STATUS_TABLE: tuple[tuple[int, int, Verdict, str], ...] = (
    (0x0000, 0x0000, Verdict.DELIVERED, "success"),
    (0x0001, 0x0001, Verdict.DELIVERED, "warning: requested optional attributes not supported"),
    (0x0107, 0x0107, Verdict.DELIVERED, "warning: attribute list error"),
    (0x0116, 0x0116, Verdict.DELIVERED, "warning: attribute value out of range"),
    (0xB000, 0xBFFF, Verdict.DELIVERED, "warning (coercion, elements discarded or mismatch)"),
    (0xA700, 0xA7FF, Verdict.RETRY, "refused: out of resources"),
    (0x0213, 0x0213, Verdict.RETRY, "resource limitation"),
    (0x0110, 0x0110, Verdict.RETRY, "processing failure"),
    (0xFE00, 0xFE00, Verdict.RETRY, "cancelled"),
    (0xA900, 0xA9FF, Verdict.REFUSED, "error: data set does not match SOP class"),
    (0xC000, 0xCFFF, Verdict.REFUSED, "error: cannot understand"),
    (0x0117, 0x0117, Verdict.REFUSED, "invalid SOP instance"),
    (0x0122, 0x0122, Verdict.REFUSED, "refused: SOP class not supported"),
    (0x0124, 0x0124, Verdict.REFUSED, "refused: not authorized"),
    (0x0210, 0x0212, Verdict.REFUSED, "protocol error (duplicate, unrecognised or mistyped)"),
)


def classify_status(status: int) -> tuple[Verdict, str]:
    """The verdict and meaning of a C-STORE status or a STOW-RS failure reason.

    A status the table does not know is a retry: an object is never given up on for a
    code nobody can explain; ``last_error`` shows it to whoever looks.
    """
    for first, last, verdict, meaning in _STATUS_TABLE:
        if first <= status <= last:
            return verdict, f"0x{status:04X} {meaning}"
    return Verdict.RETRY, f"0x{status:04X} unknown status"


@dataclass(frozen=True)
class Sendable:
    """A file whose meta header names what a presentation context needs."""

    path: Path
    sop_class: str
    transfer_syntax: str


_NOT_DICOM = (
    "not a sendable DICOM file ({}: it needs a Part 10 header with Media Storage SOP "
    "Class UID, Media Storage SOP Instance UID and Transfer Syntax UID)"
)


def inspect(path: Path) -> Sendable | SendOutcome:
    """Read only the file meta of ``path``: enough to propose its presentation context."""
    try:
        meta = read_file_meta_info(path)
        sop_class = str(meta.get("MediaStorageSOPClassUID", ""))
        syntax = str(meta.get("TransferSyntaxUID", ""))
        if not (sop_class and syntax and meta.get("MediaStorageSOPInstanceUID")):
            raise KeyError("a required file meta element is missing")
    except OSError as exc:  # missing or unreadable now; may be back later (a mount)
        return SendOutcome(path, Verdict.RETRY, f"cannot read the file ({exc.strerror})")
    except (InvalidDicomError, AttributeError, KeyError, ValueError) as exc:
        return SendOutcome(path, Verdict.REFUSED, _NOT_DICOM.format(type(exc).__name__))
    return Sendable(path, sop_class, syntax)


def load(path: Path) -> pydicom.Dataset | SendOutcome:
    """The whole file as a data set, or the outcome that says why it cannot be sent."""
    try:
        dataset = pydicom.dcmread(path)
        if not (dataset.get("SOPClassUID") and dataset.get("SOPInstanceUID")):
            raise KeyError("SOP Class UID or SOP Instance UID is missing")
    except OSError as exc:
        return SendOutcome(path, Verdict.RETRY, f"cannot read the file ({exc.strerror})")
    except (InvalidDicomError, AttributeError, KeyError, ValueError) as exc:
        return SendOutcome(path, Verdict.REFUSED, _NOT_DICOM.format(type(exc).__name__))
    return dataset
