"""Encoding data sets that radpilot itself produces (strict on output)."""

from __future__ import annotations

import struct
import uuid
from io import BytesIO

from pydicom.dataset import Dataset

from radpilot import __version__

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "encode_file",
    "part10",
    "part10_header",
]

#: radpilot's Implementation Class UID: a UUID-derived UID (PS3.5 B.2), the same everywhere.
IMPLEMENTATION_CLASS_UID = f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, 'urn:radpilot').int}"
IMPLEMENTATION_VERSION_NAME = f"RADPILOT_{__version__.replace('.', '')}"[:16]

_PREAMBLE = b"\x00" * 128 + b"DICM"


def _element(group_element: int, vr: bytes, value: bytes) -> bytes:
    pad = b"\x00" if vr in (b"UI", b"OB") else b" "
    if len(value) % 2:
        value += pad
    tag = struct.pack("<HH", group_element >> 16, group_element & 0xFFFF)
    if vr == b"OB":
        return tag + vr + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return tag + vr + struct.pack("<H", len(value)) + value


def part10(
    dataset: bytes,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    source_ae_title: str | None = None,
) -> bytes:
    """Wrap an encoded data set, untouched, as a DICOM Part 10 file."""
    header = part10_header(sop_class_uid, sop_instance_uid, transfer_syntax_uid, source_ae_title)
    return header + dataset


def part10_header(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    source_ae_title: str | None = None,
) -> bytes:
    """The preamble, prefix and File Meta Information (PS3.10 7.1) of a Part 10 file.

    This is the receiver's hot path, so the elements are encoded directly rather than
    through a pydicom Dataset; a test checks pydicom reads them back.

    Raises
    ------
    UnicodeEncodeError
        If a UID is not ASCII.
    """
    body = b"".join(
        (
            _element(0x00020001, b"OB", b"\x00\x01"),
            _element(0x00020002, b"UI", sop_class_uid.encode("ascii")),
            _element(0x00020003, b"UI", sop_instance_uid.encode("ascii")),
            _element(0x00020010, b"UI", transfer_syntax_uid.encode("ascii")),
            _element(0x00020012, b"UI", IMPLEMENTATION_CLASS_UID.encode("ascii")),
            _element(0x00020013, b"SH", IMPLEMENTATION_VERSION_NAME.encode("ascii")),
            *(
                (_element(0x00020016, b"AE", source_ae_title.encode("ascii", "replace")),)
                if source_ae_title
                else ()
            ),
        )
    )
    group_length = _element(0x00020000, b"UL", struct.pack("<I", len(body)))
    return b"".join((_PREAMBLE, group_length, body))


def encode_file(ds: Dataset) -> bytes:
    """Encode ``ds`` as a DICOM Part 10 file in the transfer syntax of its file meta.

    Raises
    ------
    ValueError
        If the data set lacks file meta information or cannot be encoded.
    """
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
