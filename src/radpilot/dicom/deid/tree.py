"""De-identify a file tree: every file under ``src`` once, results under ``dst``.

- A de-identified object is written to ``dst/<study>/<series>/<instance>.dcm``, named by
  its new (pseudonymous) UIDs, so that no input path, which may hold a patient's name,
  reaches the output. It keeps its transfer syntax; pixel data is copied byte for byte.
- An object that may carry burned-in identifiers (:mod:`.quarantine`) is copied, as it
  arrived, to ``quarantine_dir/<ref>.dcm`` for review and is not written to ``dst``.
- A file that is not DICOM or cannot be read or de-identified is counted as rejected with
  a PHI-free reason, and the run goes on; a DICOMDIR is skipped (it indexes the input).
- The record of the run (:class:`DeidRunRecord`) is written to ``dst/deid-record.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import warnings
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from radpilot.core.errors import RadpilotError
from radpilot.dicom.deid.engine import Deidentifier
from radpilot.dicom.deid.record import DeidRunRecord, FileNote

__all__ = ["RECORD_NAME", "DeidTreeError", "deidentify_tree"]

log = logging.getLogger(__name__)

RECORD_NAME = "deid-record.json"
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_UNDEFINED_LENGTH = 0xFFFFFFFF
# What a malformed file makes pydicom raise, while reading or while converting a value.
_MALFORMED = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    NotImplementedError,
    EOFError,
    struct.error,
    RuntimeError,
)


class DeidTreeError(RadpilotError):
    """The run as a whole cannot proceed: the input is missing, or OUT is IN."""


class _RejectedError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _SkippedError(_RejectedError):
    """Not an error: a file the run deliberately leaves out."""


def _files(root: Path, skip: tuple[Path, ...]) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if (here / d).resolve() not in skip)
        for name in sorted(names):
            path = here / name
            if path.is_file():
                yield path


def _warning_kind(message: str) -> str:
    # never the message itself: pydicom puts the file path in some of them
    if "End of file" in message or "truncat" in message.lower():
        return "truncated"
    if "VR" in message:
        return "value representation does not match the transfer syntax"
    return "pydicom warned while reading"


def _read(path: Path) -> Dataset:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ds = pydicom.dcmread(path)
            except InvalidDicomError:
                ds = pydicom.dcmread(path, force=True)  # a bare data set without meta
                if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
                    raise _RejectedError("not a DICOM file") from None
    except _MALFORMED as exc:
        raise _RejectedError(f"unreadable DICOM ({type(exc).__name__})") from exc
    except OSError as exc:
        raise _RejectedError(f"cannot be read ({type(exc).__name__})") from exc
    if caught:
        # pydicom warns, rather than raises, when it had to guess: a file it misreads
        # could hide identifying data where we do not look, so it is not passed on
        raise _RejectedError(f"malformed DICOM ({_warning_kind(str(caught[0].message))})")
    if (
        str(ds.get("SOPClassUID") or "") == _DICOMDIR_CLASS
        or str(getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", "")) == _DICOMDIR_CLASS
    ):
        raise _SkippedError("DICOMDIR: indexes the input tree, not copied")
    if "SOPInstanceUID" not in ds:
        raise _RejectedError("no SOP Instance UID")
    if _short_value(ds):
        raise _RejectedError("malformed DICOM (truncated)")
    return ds


def _short_value(ds: Dataset) -> bool:
    """Whether a value is shorter than its declared length (pydicom keeps it silently)."""
    for tag in ds.keys():  # noqa: SIM118 - iterating a Dataset would convert every value
        raw = ds.get_item(tag)
        if (
            isinstance(raw, RawDataElement)
            and raw.length != _UNDEFINED_LENGTH
            and raw.value is not None
            and len(raw.value) < raw.length
        ):
            return True
    return False


def _encode(ds: Dataset) -> bytes:
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        implicit, little = getattr(ds, "original_encoding", (False, True))
        syntax = (
            ImplicitVRLittleEndian
            if implicit
            else ExplicitVRLittleEndian
            if little
            else ExplicitVRBigEndian
        )
        meta = meta if meta is not None else FileMetaDataset()
        meta.TransferSyntaxUID = syntax
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta = meta
    buffer = BytesIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds.save_as(buffer, enforce_file_format=True)
    if caught:
        raise _RejectedError(f"cannot be written ({caught[0].category.__name__})")
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _place(dst: Path, ds: Dataset, data: bytes, record: DeidRunRecord) -> None:
    def part(keyword: str) -> str:
        text = str(ds.get(keyword) or "").strip()
        return text if text and "/" not in text and not text.startswith(".") else "unknown"

    folder = dst / part("StudyInstanceUID") / part("SeriesInstanceUID")
    name = part("SOPInstanceUID")
    path = folder / f"{name}.dcm"
    if path.exists():
        if path.read_bytes() == data:
            record.duplicates += 1
            return
        # same SOP Instance UID, different content (e.g. another transfer syntax): kept
        path = folder / f"{name}.{hashlib.sha256(data).hexdigest()[:8]}.dcm"
        if path.exists():
            record.duplicates += 1
            return
        record.conflicts += 1
    _write(path, data)
    record.written += 1


def deidentify_tree(
    src: Path,
    dst: Path,
    deidentifier: Deidentifier,
    quarantine_dir: Path,
    *,
    progress: Callable[[], None] | None = None,
) -> DeidRunRecord:
    """De-identify every file under ``src`` into ``dst`` (see the module doc).

    Parameters
    ----------
    src
        A folder (walked recursively, in sorted order) or a single file.
    dst
        The output folder, created if needed; it may lie inside ``src`` (it is skipped).
    deidentifier
        The engine, with its key and options.
    quarantine_dir
        Where objects held back for review are copied; created when the first is.
    progress
        Called once per file seen.

    Returns
    -------
    DeidRunRecord
        What was done, also written to ``dst/deid-record.json``.

    Raises
    ------
    DeidTreeError
        If ``src`` does not exist, or ``dst`` is ``src``.
    OSError
        If ``dst`` or ``quarantine_dir`` cannot be written (a full disk ends the run).
    """
    src, dst, quarantine_dir = src.resolve(), dst.resolve(), quarantine_dir.resolve()
    if not src.exists():
        raise DeidTreeError("the input does not exist; give a folder or a DICOM file")
    if dst == src:
        raise DeidTreeError("the output folder is the input folder; choose another one")
    dst.mkdir(parents=True, exist_ok=True)
    record = DeidRunRecord.begin(deidentifier)
    for path in _files(src, (dst, quarantine_dir)):
        relative = path.relative_to(src).as_posix() if src.is_dir() else path.name
        ref = deidentifier.pseudonyms.ref(relative)
        record.seen += 1
        try:
            ds = _read(path)
            try:
                result = deidentifier.deidentify(ds)
            except _MALFORMED as exc:
                raise _RejectedError(f"cannot be de-identified ({type(exc).__name__})") from exc
            if result.quarantine_reason is not None:
                quarantine_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, quarantine_dir / f"{ref}.dcm")
                record.quarantined.append(FileNote(ref, result.quarantine_reason, f"{ref}.dcm"))
            else:
                try:
                    data = _encode(result.dataset)
                except _MALFORMED as exc:
                    raise _RejectedError(f"cannot be written ({type(exc).__name__})") from exc
                _place(dst, result.dataset, data, record)
                record.add(result)
        except _SkippedError as exc:
            record.skipped.append(FileNote(ref, exc.reason))
        except _RejectedError as exc:
            record.rejected.append(FileNote(ref, exc.reason))
        if progress is not None:
            progress()
    record.finish()
    _write(dst / RECORD_NAME, (json.dumps(record.to_json(), indent=1) + "\n").encode())
    log.info(
        "de-identified %d of %d files (%d already in the output, %d quarantined, "
        "%d rejected, %d skipped)",
        record.written,
        record.seen,
        record.duplicates,
        len(record.quarantined),
        len(record.rejected),
        len(record.skipped),
    )
    return record
