"""A deterministic corpus of damaged DICOM, generated from real files, for the fuzz tests.

Every case is a byte string derived from a real file (``pydicom-data`` and
``shared/data/dcm_qa_ts/In``) by one mutation: truncation inside the file meta, an element
header, an element value or the pixel data; length fields rewritten (too long, odd, undefined
where not allowed, huge); VRs replaced by invalid or other VRs; garbage preambles, a missing
``DICM`` prefix; a wrong Transfer Syntax UID in the file meta; missing or over-long UIDs;
random bit flips. Non-DICOM files (empty, text, PNG, JSON, random bytes) complete it.

Each case says which outcomes are acceptable, for an import (``expect``) and for a C-STORE
of its data set (``expect_network``): ``None`` where the standard leaves the outcome open
(a damaged element radpilot need not read may be tolerated), a set of outcomes where it
does not (a truncated value must be rejected; an intact data set with a garbage preamble
must be stored). Cases that could be stored get a SOP Instance UID of their own, of the
same length as the real one, so that they never collide with the real file or each other.

The same ``seed`` always gives byte-identical cases (``random.Random`` seeded per source
file and mutation).
"""

from __future__ import annotations

import hashlib
import random
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import data_element_generator
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)
from pynetdicom import ALL_TRANSFER_SYNTAXES

__all__ = [
    "ANY",
    "KNOWN_BUGS",
    "NOT_STORED",
    "REJECTED",
    "SKIPPED",
    "STORED",
    "FuzzCase",
    "KnownBug",
    "NetworkForm",
    "build_corpus",
    "damaged_zip",
    "dataset_part",
    "mixed_zip",
    "network_form",
    "seed_paths",
    "select_seeds",
    "write_cases",
]

DEFAULT_SEED = 20240611

# Outcomes: a Receipt's outcome ("stored", "duplicate", "conflict", "rejected",
# "quarantined"), "skipped" (import: not DICOM, no receipt), "refused" (network: the SCU
# found no accepted presentation context, so nothing was sent).
STORED = frozenset({"stored"})
REJECTED = frozenset({"rejected"})
SKIPPED = frozenset({"skipped"})
NOT_STORED = frozenset({"rejected", "skipped"})
REFUSED = frozenset({"refused"})
ANY: frozenset[str] | None = None

_PREAMBLE = 128
_DICM = b"DICM"
_UNDEFINED = 0xFFFFFFFF
_HUGE = 0x7FFFFFF0
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT"}
_INVALID_VRS = (b"ZZ", b"\x00\x00", b"??", b"  ", b"\xff\xfe")
_OTHER_VRS = (b"OB", b"SQ", b"US", b"UL", b"DS", b"FD", b"AT", b"UN", b"UT", b"PN")
_PIXEL_DATA = 0x7FE00010
_SOP_INSTANCE_UID = 0x00080018
_STUDY_INSTANCE_UID = 0x0020000D
_UNKNOWN_TS = "1.2.3.4.5.6.7.8.9"


@dataclass(frozen=True, slots=True)
class FuzzCase:
    """One corpus file.

    Attributes
    ----------
    name
        A unique file name (``<seed stem>.<kind>[.<n>].dcm``).
    kind
        The mutation, e.g. ``truncate_pixels`` or ``wrong_ts``.
    seed
        The real file it was derived from, or ``None``.
    data
        The complete file.
    expect, expect_network
        Acceptable outcomes when imported / sent in a C-STORE; ``None``: any outcome, as
        long as the invariants hold (answered, receipt, nothing accepted is lost).
    """

    name: str
    kind: str
    seed: str | None
    data: bytes
    expect: frozenset[str] | None
    expect_network: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class _Element:
    tag: int
    vr: bytes | None  # None in implicit VR
    start: int  # offset of the tag in the file
    value_start: int
    length: int  # as declared (0xFFFFFFFF for undefined)
    end: int  # offset just after the element (the next element's start)

    @property
    def length_size(self) -> int:
        """2 or 4: the size of the length field (explicit VR short headers have 2)."""
        return 2 if self.vr is not None and self.value_start - self.start == 8 else 4


@dataclass(frozen=True, slots=True)
class _Seed:
    name: str
    data: bytes
    meta_end: int
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: UID
    elements: tuple[_Element, ...]

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    @property
    def little(self) -> bool:
        return self.transfer_syntax != ExplicitVRBigEndian

    @property
    def implicit(self) -> bool:
        return self.transfer_syntax == ImplicitVRLittleEndian

    @property
    def dataset(self) -> bytes:
        return self.data[self.meta_end :]

    def element(self, tag: int) -> _Element | None:
        return next((e for e in self.elements if e.tag == tag), None)

    @property
    def pixel_data(self) -> _Element | None:
        return self.element(_PIXEL_DATA)

    def header_elements(self) -> list[_Element]:
        """Elements before the pixel data (or all), with a defined length of 2+ bytes."""
        return [
            e
            for e in self.elements
            if e.tag < _PIXEL_DATA and e.length != _UNDEFINED and 2 <= e.length < 0x10000
        ]


# --- reading the structure of a real file --------------------------------------------


def _read_meta(data: bytes) -> tuple[int, dict[int, bytes]] | None:
    """The end offset and raw values of a file meta group (explicit VR little endian)."""
    if len(data) < _PREAMBLE + 4 or data[_PREAMBLE : _PREAMBLE + 4] != _DICM:
        return None
    pos = _PREAMBLE + 4
    values: dict[int, bytes] = {}
    while pos + 8 <= len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                return None
            (length,) = struct.unpack_from("<I", data, pos + 8)
            header = 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            header = 8
        if length == _UNDEFINED or pos + header + length > len(data):
            return None
        values[(group << 16) | elem] = data[pos + header : pos + header + length]
        pos += header + length
    return pos, values


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        text = value.decode("ascii").rstrip("\x00 ")
    except UnicodeDecodeError:
        return None
    return text or None


def _elements(data: bytes, start: int, implicit: bool, little: bool) -> tuple[_Element, ...]:
    """Top-level data set elements with their offsets, as pydicom's parser finds them."""
    fp = BytesIO(data)
    fp.seek(start)
    found = []
    for element in data_element_generator(fp, implicit, little):
        end = fp.tell()
        vr = None if implicit else data[start + 4 : start + 6]
        if isinstance(element, RawDataElement):
            value_start, length = element.value_tell, element.length
        else:
            # Sequences of undefined length come back parsed, without their raw length.
            value_start = start + (12 if vr is not None and vr in _LONG_VRS else 8)
            length = _UNDEFINED if element.is_undefined_length else end - value_start
        found.append(_Element(int(element.tag), vr, start, value_start, length, end))
        start = end
    return tuple(found)


def _load_seed(path: Path) -> _Seed | None:
    data = path.read_bytes()
    meta = _read_meta(data)
    if meta is None:
        return None
    meta_end, values = meta
    sop_class = _text(values.get(0x00020002))
    sop_instance = _text(values.get(0x00020003))
    tsyntax = _text(values.get(0x00020010))
    if not (sop_class and sop_instance and tsyntax) or len(sop_instance) < 12:
        return None
    ts = UID(tsyntax)
    if ts == DeflatedExplicitVRLittleEndian or not ts.is_transfer_syntax:
        return None
    implicit = ts == ImplicitVRLittleEndian
    try:
        elements = _elements(data, meta_end, implicit, ts != ExplicitVRBigEndian)
    except Exception:  # noqa: BLE001 - a file pydicom cannot walk is no use as a seed
        return None
    if not elements or elements[-1].end != len(data):
        return None
    return _Seed(path.name, data, meta_end, sop_class, sop_instance, ts, elements)


def select_seeds(
    paths: Iterable[Path], *, per_syntax: int = 1, max_size: int = 400_000
) -> list[Path]:
    """Up to ``per_syntax`` files per transfer syntax, each with its own SOP Instance UID.

    Files larger than ``max_size`` are left out to keep the corpus small; the order of
    ``paths`` decides which are picked.
    """
    chosen: list[Path] = []
    per: dict[str, int] = {}
    uids: set[str] = set()
    for path in paths:
        if path.stat().st_size > max_size:
            continue
        seed = _load_seed(path)
        if seed is None or seed.sop_instance_uid in uids:
            continue
        if per.get(seed.transfer_syntax, 0) >= per_syntax:
            continue
        per[seed.transfer_syntax] = per.get(seed.transfer_syntax, 0) + 1
        uids.add(seed.sop_instance_uid)
        chosen.append(path)
    return chosen


# --- byte-level edits ----------------------------------------------------------------


class _Renamer:
    """New SOP Instance UIDs of the same length as the old one (so no offset moves).

    Every mutant gets one, so that a mutant the intake accepts is filed apart from the
    real file and from the other mutants.
    """

    def __init__(self) -> None:
        self.count = 0
        self.last = ""

    def __call__(self, seed: _Seed) -> bytes:
        self.count += 1
        suffix = f"9{self.count:05d}"
        uid = seed.sop_instance_uid
        self.last = uid[: len(uid) - len(suffix)] + suffix
        return seed.data.replace(uid.encode("ascii"), self.last.encode("ascii"))


def _pack_length(value: int, size: int, little: bool) -> bytes:
    return struct.pack(("<" if little else ">") + ("I" if size == 4 else "H"), value)


def _set_length(seed: _Seed, data: bytes, element: _Element, length: int) -> bytes:
    size = element.length_size
    at = element.value_start - size
    return data[:at] + _pack_length(length, size, seed.little) + data[at + size :]


def _set_vr(data: bytes, element: _Element, vr: bytes) -> bytes:
    return data[: element.start + 4] + vr + data[element.start + 6 :]


def _remove(data: bytes, element: _Element) -> bytes:
    return data[: element.start] + data[element.end :]


def _replace_value(seed: _Seed, data: bytes, element: _Element, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00"
    size = element.length_size
    header = data[element.start : element.value_start - size]
    length = _pack_length(len(value), size, seed.little)
    return data[: element.start] + header + length + value + data[element.end :]


def _file_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """Preamble, ``DICM`` and a well-formed file meta group."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    buffer = DicomBytesIO()
    buffer.write(b"\x00" * _PREAMBLE + _DICM)
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return buffer.getvalue()


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def _long_uid(rng: random.Random, length: int = 70) -> bytes:
    digits = "".join(rng.choice("0123456789") for _ in range(length - 5))
    return ("1.2.9" + digits)[:length].encode("ascii")


# --- mutations -----------------------------------------------------------------------

_Cases = Iterator[tuple[str, bytes, frozenset[str] | None, frozenset[str] | None]]
_Mutation = Callable[[_Seed, random.Random, _Renamer], _Cases]


def _original(seed: _Seed, rng: random.Random, rename: _Renamer) -> _Cases:
    yield "original", seed.data, STORED, STORED


def _preamble_garbage(seed: _Seed, rng: random.Random, rename: _Renamer) -> _Cases:
    # The preamble is free for application use (PS3.10 7.1): this is a valid file.
    data = rename(seed)
    yield "preamble_garbage", rng.randbytes(_PREAMBLE) + data[_PREAMBLE:], STORED, STORED


def _missing_dicm(seed: _Seed, rng: random.Random, rename: _Renamer) -> _Cases:
    data = rename(seed)
    yield "missing_dicm", data[:_PREAMBLE] + b"DICN" + data[_PREAMBLE + 4 :], NOT_STORED, REJECTED
    garbage = rng.randbytes(_PREAMBLE + 4)
    yield "random_preamble_no_dicm", garbage + data[_PREAMBLE + 4 :], NOT_STORED, REJECTED


def _bare_dataset(seed: _Seed, rng: random.Random, rename: _Renamer) -> _Cases:
    # Older systems write data sets without preamble and meta; ingest wraps them.
    data = rename(seed)[seed.meta_end :]
    # Without file meta the transfer syntax is guessed, so only native little endian
    # data sets are sure to be understood.
    native = seed.little and not seed.transfer_syntax.is_compressed
    expect = STORED if native and data[:2] == b"\x08\x00" else ANY
    yield "bare_dataset", data, expect, REJECTED


def _truncate_meta(seed: _Seed, rng: random.Random, rename: _Renamer) -> _Cases:
    for at in sorted({_PREAMBLE + 4 + 6, rng.randrange(_PREAMBLE + 16, seed.meta_end)}):
        yield "truncate_meta", rename(seed)[:at], REJECTED, REJECTED
    # One byte of the 4-byte File Meta Information Group Length value.
    yield "truncate_meta_group_length", rename(seed)[: _PREAMBLE + 4 + 9], REJECTED, REJECTED
    # The group length element claims 6 bytes for its 4-byte UL value.
    data = bytearray(rename(seed))
    data[_PREAMBLE + 4 + 6 : _PREAMBLE + 4 + 8] = struct.pack("<H", 6)
    yield "meta_length_wrong", bytes(data), REJECTED, ANY


def _truncate_header(seed: _Seed, rng: random.Random, rename: _Renamer) -> _Cases:
    elements = seed.header_elements()
    for element in rng.sample(elements, min(2, len(elements))):
        at = rng.randrange(element.value_start + 1, element.value_start + element.length)
        yield "truncate_in_value", rename(seed)[:at], REJECTED, REJECTED
    # Cut inside an element's first 8 bytes (tag, VR, length): a partial header at the end.
    # Early elements, and the pixel data's own header.
    cut = [*rng.sample(seed.elements[1:-1], min(3, len(seed.elements) - 2)), seed.elements[-1]]
    for element in sorted(cut, key=lambda e: e.start):
        at = rng.randrange(element.start + 1, min(element.value_start, element.start + 8))
        yield "truncate_in_element_header", rename(seed)[:at], REJECTED, REJECTED
    # Cut inside the 4-byte length of an explicit VR OB/OW/UN/UT/SQ... element.
    longs = [e for e in seed.elements[1:] if e.vr is not None and e.length_size == 4]
    if longs:
        element = rng.choice(longs)
        cut = rename(seed)[: element.start + 8 + rng.randrange(1, 4)]
        yield "truncate_in_long_length", cut, REJECTED, REJECTED
    # A private element of undefined length (so pydicom looks ahead for an item) at the
    # very end, with 2 bytes after its header.
    tag = struct.pack("<HH" if seed.little else ">HH", 0x0009, 0x1010)
    vr = b"" if seed.implicit else b"UN\x00\x00"
    tail = tag + vr + b"\xff\xff\xff\xff" + b"\x00\x00"
    yield "undefined_length_at_end", rename(seed) + tail, REJECTED, REJECTED


def _truncate_pixels(seed: _Seed, rng: random.Random, rename: _Renamer) -> _Cases:
    pixels = seed.pixel_data
    if pixels is None or pixels.end - pixels.value_start < 16:
        return
    size = pixels.end - pixels.value_start
    for at in sorted({pixels.value_start + 2, pixels.value_start + rng.randrange(4, size - 2)}):
        yield "truncate_pixels", rename(seed)[:at], REJECTED, REJECTED
    yield "truncate_last_byte", rename(seed)[:-1], REJECTED, REJECTED


def _lengths(seed: _Seed, rng: random.Random, rename: _Renamer) -> _Cases:
    elements = seed.header_elements()
    for element in rng.sample(elements, min(2, len(elements))):
        longer = min(element.length + 2 * rng.randint(1, 8), 0xFFFF)
        yield "length_too_long", _set_length(seed, rename(seed), element, longer), ANY, ANY
    if elements:
        element = rng.choice(elements)
        odd = _set_length(seed, rename(seed), element, element.length + 1)
        yield "length_odd", odd, ANY, ANY
    pixels = seed.pixel_data
    if pixels is not None and pixels.length != _UNDEFINED and pixels.end == len(seed.data):
        # The last element claims more bytes than the file holds.
        longer = _set_length(seed, rename(seed), pixels, pixels.length + 2)
        yield "length_pixels_too_long", longer, REJECTED, REJECTED
    four_byte = [e for e in seed.elements if e.length_size == 4 and e.length != _UNDEFINED]
    for element in rng.sample(four_byte, min(2, len(four_byte))):
        huge = _set_length(seed, rename(seed), element, _HUGE)
        yield "length_huge", huge, REJECTED, REJECTED
    not_sq = [e for e in four_byte if e.vr != b"SQ"]
    if not_sq:
        element = rng.choice(not_sq)
        # Undefined length is allowed only for SQ, items and encapsulated pixel data.
        undefined = _set_length(seed, rename(seed), element, _UNDEFINED)
        yield "length_undefined", undefined, ANY, ANY
    short = [e for e in elements if e.length_size == 2]
    if short:
        element = rng.choice(short)
        longest = _set_length(seed, rename(seed), element, 0xFFFF)
        yield "length_short_max", longest, ANY, ANY


def _vrs(seed: _Seed, rng: random.Random, rename: _Renamer) -> _Cases:
    if seed.implicit:
        return
    elements = list(seed.elements)
    for element in rng.sample(elements, min(2, len(elements))):
        vr = rng.choice(_INVALID_VRS)
        yield "vr_invalid", _set_vr(rename(seed), element, vr), ANY, ANY
    for element in rng.sample(elements, min(2, len(elements))):
        other = rng.choice([vr for vr in _OTHER_VRS if vr != element.vr])
        yield "vr_other", _set_vr(rename(seed), element, other), ANY, ANY
    pixels = seed.pixel_data
    if pixels is not None:
        vr = rng.choice((b"DS", b"US", b"SQ", b"ZZ"))
        yield "vr_pixels", _set_vr(rename(seed), pixels, vr), ANY, ANY


def _wrong_ts(seed: _Seed, rng: random.Random, rename: _Renamer) -> _Cases:
    """The file meta names a transfer syntax the data set is not encoded in."""
    ts = seed.transfer_syntax
    kinds: list[tuple[str, UID, frozenset[str] | None]] = []
    if ts.is_compressed:
        # Encapsulated pixel data declared as native: cannot be read as native.
        kinds.append(("wrong_ts_native", ExplicitVRLittleEndian, REJECTED))
        kinds.append(("wrong_ts_native", ImplicitVRLittleEndian, REJECTED))
    else:
        # Native pixel data declared as encapsulated (PS3.5 A.4 requires undefined length).
        kinds.append(("wrong_ts_encapsulated", JPEGBaseline8Bit, REJECTED))
    if ts == ExplicitVRBigEndian:
        kinds.append(("wrong_ts_endian", ExplicitVRLittleEndian, REJECTED))
    else:
        kinds.append(("wrong_ts_endian", ExplicitVRBigEndian, REJECTED))
    if ts == ImplicitVRLittleEndian:
        kinds.append(("wrong_ts_vr", ExplicitVRLittleEndian, ANY))
    elif not ts.is_compressed and ts.is_little_endian:
        kinds.append(("wrong_ts_vr", ImplicitVRLittleEndian, ANY))
    # A data set that is not deflated where the meta says it is.
    kinds.append(("wrong_ts_deflate", DeflatedExplicitVRLittleEndian, REJECTED))
    kinds.append(("wrong_ts_unknown", UID(_UNKNOWN_TS), ANY))
    kinds.append(("wrong_ts_unknown", UID(seed.sop_class_uid), ANY))
    for kind, other, expect in kinds:
        data = rename(seed)
        meta = _file_meta(seed.sop_class_uid, rename.last, other)
        # The receiver accepts every transfer syntax pynetdicom knows, and no other.
        net = expect if other in ALL_TRANSFER_SYNTAXES else REFUSED
        yield kind, meta + data[seed.meta_end :], expect, net


def _deflated(seed: _Seed, rng: random.Random, rename: _Renamer) -> _Cases:
    if seed.transfer_syntax != ExplicitVRLittleEndian:
        return

    def deflated() -> tuple[bytes, bytes]:
        data = rename(seed)
        meta = _file_meta(seed.sop_class_uid, rename.last, DeflatedExplicitVRLittleEndian)
        return meta, _deflate(data[seed.meta_end :])

    meta, body = deflated()
    yield "deflated_valid", meta + body, STORED, STORED
    meta, body = deflated()
    yield "deflated_truncated", meta + body[: len(body) // 2], REJECTED, REJECTED
    meta, body = deflated()
    yield "deflated_random", meta + rng.randbytes(len(body)), REJECTED, REJECTED


def _uids(seed: _Seed, rng: random.Random, rename: _Renamer) -> _Cases:
    for tag, kind in ((_SOP_INSTANCE_UID, "sop_instance"), (_STUDY_INSTANCE_UID, "study")):
        element = seed.element(tag)
        if element is None:
            continue
        yield f"missing_{kind}_uid", _remove(rename(seed), element), REJECTED, REJECTED
        long_uid = _replace_value(seed, rename(seed), element, _long_uid(rng))
        yield f"overlong_{kind}_uid", long_uid, REJECTED, REJECTED
        unprintable = _replace_value(seed, rename(seed), element, b"1.2.3\x01\x02.4")
        yield f"unprintable_{kind}_uid", unprintable, REJECTED, REJECTED


#: Text attributes radpilot indexes, with their VR's length limit ignored (PS3.5 6.2).
_INDEXED_TEXT = (
    0x00080050,  # AccessionNumber (SH, 16)
    0x00080070,  # Manufacturer (LO, 64)
    0x00080080,  # InstitutionName (LO, 64)
    0x00081010,  # StationName (SH, 16)
    0x00081030,  # StudyDescription (LO, 64)
    0x00100020,  # PatientID (LO, 64)
    0x00180015,  # BodyPartExamined (CS, 16)
    0x00181210,  # ConvolutionKernel (SH, 16)
)


def _overlong_values(seed: _Seed, rng: random.Random, rename: _Renamer) -> _Cases:
    """Indexed text values far over their VR's maximum length (seen from real devices)."""
    data = rename(seed)
    targets = [e for e in seed.elements if e.tag in _INDEXED_TEXT and e.length != _UNDEFINED]
    if not targets:
        return
    for element in sorted(targets, key=lambda e: e.start, reverse=True):  # offsets stay valid
        value = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ") for _ in range(300))
        data = _replace_value(seed, data, element, value.encode("ascii"))
    yield "overlong_values", data, ANY, ANY


def _bit_flips(seed: _Seed, rng: random.Random, rename: _Renamer) -> _Cases:
    data = bytearray(rename(seed))
    header_end = seed.pixel_data.start if seed.pixel_data is not None else len(data)
    for _ in range(rng.randint(1, 12)):
        at = rng.randrange(seed.meta_end, header_end)
        data[at] ^= 1 << rng.randrange(8)
    yield "bit_flips", bytes(data), ANY, ANY


_MUTATIONS: tuple[_Mutation, ...] = (
    _original,
    _preamble_garbage,
    _missing_dicm,
    _bare_dataset,
    _truncate_meta,
    _truncate_header,
    _truncate_pixels,
    _lengths,
    _vrs,
    _wrong_ts,
    _deflated,
    _uids,
    _overlong_values,
    _bit_flips,
)


def _png(rng: random.Random) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    width = height = 8
    rows = b"".join(b"\x00" + rng.randbytes(width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _not_dicom(rng: random.Random) -> _Cases:
    yield "empty", b"", SKIPPED, REJECTED
    yield "text", b"Patient list, do not import\n" * 40, SKIPPED, REJECTED
    yield "png", _png(rng), SKIPPED, REJECTED
    yield "json", b'{"StudyInstanceUID": "1.2.3", "modality": "CT"}\n', SKIPPED, REJECTED
    for size in (1, 7, 131, 1000, 70_000):
        yield "random_bytes", rng.randbytes(size), NOT_STORED, REJECTED
    yield "dicm_only", b"\x00" * _PREAMBLE + _DICM, REJECTED, REJECTED
    for size in (16, 4096):
        data = b"\x00" * _PREAMBLE + _DICM + rng.randbytes(size)
        yield "dicm_random", data, REJECTED, REJECTED
    # Bare data sets (no preamble) that start like one but are garbage.
    yield "bare_random", b"\x08\x00\x05\x00" + rng.randbytes(2000), NOT_STORED, REJECTED
    huge_implicit = b"\x08\x00\x16\x00" + struct.pack("<I", _HUGE) + rng.randbytes(64)
    yield "bare_huge_length", huge_implicit, NOT_STORED, REJECTED
    huge_explicit = b"\x08\x00\x16\x00UI" + struct.pack("<H", 0xFFF0) + b"1.2.3\x00"
    yield "bare_huge_length", huge_explicit, NOT_STORED, REJECTED


def build_corpus(seed_paths: Iterable[Path], seed: int = DEFAULT_SEED) -> list[FuzzCase]:
    """Every mutation of every seed file, plus the non-DICOM cases; deterministic.

    Raises
    ------
    ValueError
        If none of ``seed_paths`` can be used (no file meta, no SOP Instance UID).
    """
    rename = _Renamer()
    cases: list[FuzzCase] = []
    names: dict[str, int] = {}

    def add(
        stem: str,
        seed_name: str | None,
        kind: str,
        data: bytes,
        expect: frozenset[str] | None,
        net: frozenset[str] | None,
    ) -> None:
        base = f"{stem}.{kind}"
        names[base] = names.get(base, 0) + 1
        name = f"{base}.{names[base]}.dcm"
        cases.append(FuzzCase(name, kind, seed_name, data, expect, net))

    seeds = [s for s in map(_load_seed, seed_paths) if s is not None]
    if not seeds:
        raise ValueError("no usable seed file: each needs file meta and a SOP Instance UID")
    for real in seeds:
        for mutation in _MUTATIONS:
            rng = random.Random(f"{seed}:{real.name}:{mutation.__name__}")
            for kind, data, expect, net in mutation(real, rng, rename):
                add(real.stem, real.name, kind, data, expect, net)
    rng = random.Random(f"{seed}:not-dicom")
    for kind, data, expect, net in _not_dicom(rng):
        add("junk", None, kind, data, expect, net)
    return cases


def write_cases(cases: Iterable[FuzzCase], folder: Path) -> dict[Path, FuzzCase]:
    """Write each case to ``folder/<name>``; the paths and their cases."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for case in cases:
        path = folder / case.name
        path.write_bytes(case.data)
        written[path] = case
    return written


def mixed_zip(cases: list[FuzzCase], path: Path, seed: int = DEFAULT_SEED) -> dict[str, FuzzCase]:
    """A zip of a sample of ``cases`` in sub-folders, a folder entry and a DICOMDIR member.

    Returns the members that are objects to import (not the folder, not the DICOMDIR) and
    the case each holds. Valid members get a fresh name but the same bytes, so an import of
    both the folder and the zip sees them as duplicates.
    """
    rng = random.Random(f"{seed}:zip")
    sample = rng.sample(cases, min(40, len(cases)))
    sample += [c for c in cases if c.kind == "original"][:3]
    members: dict[str, FuzzCase] = {}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("nested/", b"")
        archive.writestr("DICOMDIR", b"\x00" * _PREAMBLE + _DICM + b"not a real DICOMDIR")
        for n, case in enumerate(sample):
            name = f"nested/{n % 3}/{n:03d}_{case.name}"
            archive.writestr(name, case.data)
            members[name] = case
    return members


def damaged_zip(case: FuzzCase, path: Path, how: str) -> str:
    """A zip whose one member cannot be read back; the member's name.

    ``how`` is ``"crc"`` (a stored member with a flipped byte: its CRC-32 fails) or
    ``"deflate"`` (a deflated member whose compressed stream is invalid).
    """
    name = "damaged/" + case.name
    method = zipfile.ZIP_STORED if how == "crc" else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        archive.writestr(name, case.data)
        info = archive.getinfo(name)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(name.encode())  # the member's bytes
    if how == "crc":
        data[start + info.compress_size // 2] ^= 0xFF
    else:
        # 0xFF opens the compressed stream: a block of the reserved type 3 (RFC 1951).
        data[start : start + 4] = b"\xff" * 4
    path.write_bytes(bytes(data))
    return name


@dataclass(frozen=True, slots=True)
class NetworkForm:
    """What a C-STORE of a case carries: the request UIDs, syntax and data set bytes.

    ``wrapped`` is true when the case has no usable file meta (garbage preamble, not DICOM):
    then its whole content travels as the data set under a SOP Instance UID it cannot
    contain, so the receiver must reject it.
    """

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    dataset: bytes
    wrapped: bool

    def part10(self) -> bytes:
        """A file that pynetdicom's SCU sends as is (meta it can read, data set raw)."""
        meta = _file_meta(self.sop_class_uid, self.sop_instance_uid, self.transfer_syntax)
        return meta + self.dataset


def network_form(case: FuzzCase) -> NetworkForm:
    """How ``case`` travels over the network (file meta is not sent, only its UIDs)."""
    meta = _read_meta(case.data)
    if meta is not None:
        meta_end, values = meta
        uids = [_text(values.get(t)) for t in (0x00020002, 0x00020003, 0x00020010)]
        if all(u and len(u) <= 64 and u.replace(".", "").isdigit() for u in uids):
            sop_class, sop_instance, tsyntax = (str(u) for u in uids)
            return NetworkForm(sop_class, sop_instance, tsyntax, case.data[meta_end:], False)
    digest = int(hashlib.sha256(case.name.encode()).hexdigest()[:30], 16)
    return NetworkForm(CTImageStorage, f"2.25.{digest}", ExplicitVRLittleEndian, case.data, True)


def dataset_part(data: bytes) -> bytes:
    """The bytes after preamble and file meta: what a C-STORE carries.

    Raises
    ------
    ValueError
        If ``data`` has no readable file meta.
    """
    meta = _read_meta(data)
    if meta is None:
        raise ValueError("no DICM prefix or unreadable file meta")
    return data[meta[0] :]


def seed_paths() -> list[Path]:
    """The real files the corpus is made from: each transfer syntax of ``dcm_qa_ts`` (one
    MR image saved in many) and small ``pydicom-data`` files of other vendors, one per
    transfer syntax. Skips (fails in CI) when the data is not installed.
    """
    from tests.conftest import pydicom_data_files, shared_data

    qa = select_seeds(sorted(shared_data("dcm_qa_ts", "In").iterdir()))
    others = select_seeds(pydicom_data_files(), max_size=150_000)
    return qa + others


@dataclass(frozen=True, slots=True)
class KnownBug:
    """A mutation kind that radpilot currently mishandles.

    Attributes
    ----------
    reason
        What goes wrong, and where.
    crashes
        An exception escapes ``Intake.accept``: an import aborts, a C-STORE is answered
        0xC211 by pynetdicom without a receipt.
    network
        Also wrong over the network (the receiver builds its own file meta, so bugs in
        reading file meta affect imports only).
    """

    reason: str
    crashes: bool
    network: bool = True


#: The fuzz tests run these kinds separately as strict xfails (and leave the crashing ones
#: out of the main runs); delete an entry once its bug is fixed.
KNOWN_BUGS: dict[str, KnownBug] = {}
