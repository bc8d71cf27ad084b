"""Reading DICOM tolerantly and extracting what the index needs.

Intake is tolerant (PACS data in the wild breaks the standard) but never silent: a value
that cannot be read becomes ``None`` plus a named problem, and a file that cannot be
understood at all raises :class:`InvalidInstanceError` with the reason and the DIMSE status
a C-STORE SCP should answer.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import pydicom
from pydicom import config as pydicom_config
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_deferred_data_element
from pydicom.tag import Tag
from pydicom.uid import UID

from radpilot.dicom.status import Status

__all__ = [
    "InstanceMeta",
    "InvalidInstanceError",
    "configure_pydicom",
    "extract_meta",
    "identify",
    "parse_age_years",
    "parse_bytes",
    "read_values",
]


class InvalidInstanceError(ValueError):
    """A DICOM object radpilot will not accept.

    Attributes
    ----------
    status
        The C-STORE failure status that describes the problem.
    reason
        A PHI-free sentence saying what is wrong.
    """

    def __init__(self, reason: str, status: int = Status.CANNOT_UNDERSTAND) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def configure_pydicom() -> None:
    """Read leniently: invalid values are kept as found instead of raising or warning.

    Called once by the command-line entry point (not at import time), because pydicom's
    configuration is process-wide.
    """
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE


def parse_bytes(data: bytes) -> Dataset:
    """Parse a complete DICOM file (preamble, meta, data set) held in memory.

    Raises
    ------
    InvalidInstanceError
        If the bytes are not a DICOM file that pydicom can parse.
    """
    try:
        # pydicom reads every element header and length here (raising on a malformed
        # structure); values are converted lazily, only those radpilot reads. Values over
        # _DEFER_SIZE (pixel data, mostly) are not copied out of ``data``: pydicom skips
        # them and reads one from the buffer only if it is asked for.
        ds = pydicom.dcmread(BytesIO(data), defer_size=_DEFER_SIZE)
        if ds.file_meta.get("TransferSyntaxUID") == pydicom.uid.DeflatedExplicitVRLittleEndian:
            # A deferred value is read back at its offset in the inflated stream, which
            # is not the offset in ``data``: deflated data sets are read whole.
            ds = pydicom.dcmread(BytesIO(data))
    except InvalidDicomError as exc:
        raise InvalidInstanceError(f"not a DICOM file: {exc}") from exc
    except (EOFError, OSError, zlib.error) as exc:
        raise InvalidInstanceError(f"truncated or corrupt DICOM data: {exc}") from exc
    except Exception as exc:
        # Whatever pydicom raises on hostile bytes (ValueError, struct.error, KeyError,
        # MemoryError, ...) means the same to the sender: cannot understand.
        raise InvalidInstanceError(f"malformed DICOM data: {type(exc).__name__}: {exc}") from exc
    if not len(ds):
        # pydicom warns and returns an empty data set when, e.g., encapsulated pixel data
        # ends before its sequence delimiter.
        raise InvalidInstanceError("truncated or corrupt DICOM data: no element could be read")
    _check_complete(ds, data)
    return ds


_UNDEFINED = 0xFFFFFFFF
_DEFER_SIZE = 64 * 1024


def _present(raw: RawDataElement, data: bytes) -> int:
    """How many bytes of the element's value ``data`` holds (a deferred value is not read)."""
    if raw.value is not None:
        return len(raw.value)
    if raw.length == _UNDEFINED or raw.value_tell is None:
        return 0
    return max(0, min(raw.length, len(data) - raw.value_tell))


_PIXEL_DATA = 0x7FE00010
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _check_no_partial_header(ds: Dataset, data: bytes) -> None:
    """Reject 1-7 bytes left after the last element: a data set cut inside a header.

    pydicom stops without a word when fewer than 8 bytes remain, which would accept a
    data set without the elements the cut removed.
    """
    tags = list(ds.keys())
    if not tags:
        return
    raw = ds.get_item(tags[-1], keep_deferred=True)
    if not isinstance(raw, RawDataElement) or raw.value_tell is None:
        return
    got = _present(raw, data)
    end = raw.value_tell + (got + 8 if raw.length == _UNDEFINED else raw.length)
    if 0 < len(data) - end < 8:
        raise InvalidInstanceError(
            f"truncated DICOM data: {len(data) - end} byte(s) of an element header at the end"
        )


def _check_complete(ds: Dataset, data: bytes) -> None:
    """Reject data sets that pydicom read without complaint although they are cut short.

    pydicom keeps a short value when the data ends early, stops quietly at a partial
    element header, and accepts encapsulated pixel data without its closing delimiter.
    Elements still in raw form are checked without converting their values.

    Raises
    ------
    InvalidInstanceError
        If a value is shorter than its declared length, or encapsulated pixel data
        lacks its sequence delimiter.
    """
    deflated = ds.file_meta.get("TransferSyntaxUID") == pydicom.uid.DeflatedExplicitVRLittleEndian
    if not deflated:
        _check_no_partial_header(ds, data)
    for tag in ds.keys():  # noqa: SIM118 - iterating a Dataset converts every element
        raw = ds.get_item(tag, keep_deferred=True)
        if not isinstance(raw, RawDataElement):
            continue
        if raw.value is None and raw.length == _UNDEFINED:
            # Deferred encapsulated pixel data: its end is only known once it is read.
            try:
                raw = read_deferred_data_element(BytesIO, BytesIO(data), None, raw)
            except Exception as exc:
                raise InvalidInstanceError(
                    f"malformed DICOM data: element {Tag(tag)}: {type(exc).__name__}: {exc}"
                ) from exc
        got = _present(raw, data)
        if raw.length != _UNDEFINED:
            if got < raw.length:
                raise InvalidInstanceError(
                    f"truncated DICOM data: element {Tag(tag)} declares {raw.length} "
                    f"bytes, {got} present"
                )
        elif tag == _PIXEL_DATA and not deflated:
            end = raw.value_tell + got
            if data[end : end + 8] != _SEQUENCE_DELIMITER:
                raise InvalidInstanceError(
                    "truncated DICOM data: encapsulated pixel data has no sequence delimiter"
                )


def _uid(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception as exc:
        raise InvalidInstanceError(f"{keyword} cannot be read: {exc}") from exc
    text = str(value or "").strip().rstrip("\x00").strip()
    if not text:
        raise InvalidInstanceError(f"{keyword} is missing; radpilot files instances by it")
    if len(text) > 64 or not text.isprintable() or "\\" in text:
        raise InvalidInstanceError(
            f"{keyword} is not a valid UID (over 64 characters or not printable)"
        )
    return text


@dataclass(slots=True)
class InstanceMeta:
    """The attributes radpilot indexes, read once per instance."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    values: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


# keyword -> converter; each converter returns None when the value is absent
_TEXT_FIELDS = (
    "PatientID",
    "IssuerOfPatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "AccessionNumber",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "InstitutionName",
    "Modality",
    "BodyPartExamined",
    "ViewPosition",
    "SeriesDescription",
    "ProtocolName",
    "Manufacturer",
    "ManufacturerModelName",
    "SoftwareVersions",
    "StationName",
    "ConvolutionKernel",
    "PhotometricInterpretation",
    "BurnedInAnnotation",
    "PixelSpacing",
    "ImagerPixelSpacing",
)
_INT_FIELDS = (
    "SeriesNumber",
    "InstanceNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "BitsAllocated",
    "BitsStored",
    "SamplesPerPixel",
)
_FLOAT_FIELDS = ("SliceThickness", "KVP")
_MAX_TEXT = {
    "StudyDate": 8,
    "PatientBirthDate": 8,
    "PatientAge": 8,
    "PatientSex": 16,
    "Modality": 16,
    "ViewPosition": 16,
    "BurnedInAnnotation": 16,
    "PhotometricInterpretation": 32,
    "StudyTime": 32,
}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.replace("\x00", "").strip()
    return text or None


def _number(value: Any, kind: type[int] | type[float]) -> int | float | None:
    if value is None or value == "":
        return None
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        value = value[0] if len(value) else None
        if value is None:
            return None
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    if kind is int:
        if not -(2**31) <= number < 2**31:
            raise ValueError("integer out of range")
        return int(number)
    return number


def identify(ds: Dataset) -> InstanceMeta:
    """Read what is needed to accept and file an instance, and nothing more.

    This is the receiver's hot path: the four UIDs, the transfer syntax and a check that
    native pixel data is complete. :func:`read_values` fills in the rest later, off the
    association's thread.

    Raises
    ------
    InvalidInstanceError
        If a UID needed to file the instance is missing or invalid, or pixel data is
        truncated.
    """
    tsyntax = ""
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        tsyntax = str(meta.get("TransferSyntaxUID", "") or "")
    result = InstanceMeta(
        sop_class_uid=_uid(ds, "SOPClassUID"),
        sop_instance_uid=_uid(ds, "SOPInstanceUID"),
        study_instance_uid=_uid(ds, "StudyInstanceUID"),
        series_instance_uid=_uid(ds, "SeriesInstanceUID"),
        transfer_syntax_uid=tsyntax or "1.2.840.10008.1.2",
    )
    check_pixel_data(ds, result)
    return result


def read_values(ds: Dataset, meta: InstanceMeta) -> InstanceMeta:
    """Fill ``meta.values`` with the indexed attributes, best effort.

    A value that cannot be read becomes ``None`` and a named entry in ``meta.problems``.
    """
    values = meta.values
    for keyword in _TEXT_FIELDS:
        try:
            text = _text(ds.get(keyword))
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on broken values
            meta.problems.append(f"{keyword} unreadable ({type(exc).__name__})")
            continue
        limit = _MAX_TEXT.get(keyword, 256)
        values[keyword] = text[:limit] if text else None
    for keywords, kind in ((_INT_FIELDS, int), (_FLOAT_FIELDS, float)):
        for keyword in keywords:
            try:
                values[keyword] = _number(ds.get(keyword), kind)
            except Exception as exc:  # noqa: BLE001 - as above
                meta.problems.append(f"{keyword} unreadable ({type(exc).__name__})")
                values[keyword] = None
    values["PatientAgeYears"] = parse_age_years(
        values.get("PatientAge"), values.get("PatientBirthDate"), values.get("StudyDate")
    )
    return meta


def extract_meta(ds: Dataset) -> InstanceMeta:
    """:func:`identify` and :func:`read_values` in one call.

    Raises
    ------
    InvalidInstanceError
        As :func:`identify`.
    """
    return read_values(ds, identify(ds))


def parse_age_years(
    age: str | None, birth_date: str | None, study_date: str | None
) -> float | None:
    """Age in years from PatientAge (``nnnD/W/M/Y``), else from birth and study dates."""
    if age and len(age) >= 2 and age[:-1].isdigit():
        unit = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}.get(age[-1].upper())
        if unit is not None:
            return round(int(age[:-1]) * unit, 3)
    if birth_date and study_date and len(birth_date) == 8 and len(study_date) == 8:
        try:
            by, bm, bd = int(birth_date[:4]), int(birth_date[4:6]), int(birth_date[6:])
            sy, sm, sd = int(study_date[:4]), int(study_date[4:6]), int(study_date[6:])
        except ValueError:
            return None
        years = sy - by - ((sm, sd) < (bm, bd))
        return float(years) if 0 <= years < 150 else None
    return None


def check_pixel_data(ds: Dataset, meta: InstanceMeta) -> None:
    """Reject native pixel data shorter than Rows x Columns x frames needs.

    Raises
    ------
    InvalidInstanceError
        If the pixel data is truncated.
    """
    tsyntax = UID(meta.transfer_syntax_uid)
    if "PixelData" not in ds:
        if (
            "Rows" in ds
            and "Columns" in ds
            and not ("FloatPixelData" in ds or "DoubleFloatPixelData" in ds)
        ):
            raise InvalidInstanceError(
                "image attributes (Rows, Columns) without pixel data: the data set is "
                "probably truncated"
            )
        return
    raw = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    length = raw.length if isinstance(raw, RawDataElement) else None
    if tsyntax.is_transfer_syntax and tsyntax.is_encapsulated and length != _UNDEFINED:
        raise InvalidInstanceError(
            f"pixel data is not encapsulated although the transfer syntax "
            f"({tsyntax.name}) is compressed"
        )
    if not tsyntax.is_transfer_syntax or tsyntax.is_compressed:
        return  # encapsulated or unknown encoding: the codec checks it when decoding
    try:
        rows, cols, bits = (_number(ds.get(k), int) for k in ("Rows", "Columns", "BitsAllocated"))
        frames = _number(ds.get("NumberOfFrames"), int) or 1
        samples = _number(ds.get("SamplesPerPixel"), int) or 1
    except Exception as exc:
        raise InvalidInstanceError(f"image size attributes unreadable: {exc}") from exc
    if not rows or not cols or not bits:
        meta.problems.append("pixel data without Rows, Columns or BitsAllocated")
        return
    expected_bits = rows * cols * frames * samples * bits
    expected = (expected_bits + 7) // 8
    actual = _pixel_bytes(ds, raw)
    if actual < expected:
        raise InvalidInstanceError(
            f"pixel data truncated: {actual} bytes where {rows}x{cols}x{frames} frames x "
            f"{samples} samples x {bits} bits need {expected}"
        )


def _pixel_bytes(ds: Dataset, raw: object) -> int:
    """The length of native pixel data, without reading a deferred value.

    A value :func:`parse_bytes` deferred was checked there to be present in full, so its
    declared length is its length; reading it would copy the whole image. (A data set
    read elsewhere with ``defer_size`` must have had the same check.)
    """
    if isinstance(raw, RawDataElement) and raw.length != _UNDEFINED:
        return len(raw.value) if raw.value is not None else raw.length
    return len(ds.PixelData)
