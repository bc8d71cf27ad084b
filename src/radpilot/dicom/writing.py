"""Encoding data sets that radpilot itself produces (strict on output)."""

from __future__ import annotations

from io import BytesIO

from pydicom.dataset import Dataset

__all__ = ["encode_file"]


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
