"""The C-STORE response's command set, encoded without building a pydicom data set.

pynetdicom encodes every DIMSE message by filling a pydicom :class:`~pydicom.Dataset`
with the command elements and writing it twice (once to measure the group length): about
0.3 ms per C-STORE response here, paid on every image before the sender may send the
next one. A C-STORE response without Offending Element or Error Comment always has the
same seven elements (PS3.7 Table 9.3-2), so radpilot writes them directly, in Implicit VR
Little Endian as PS3.7 6.3.1 requires for command sets. ``tests/test_acceptor.py`` checks
the bytes against pynetdicom's own encoder; anything else (an error comment, a missing
UID) goes through pynetdicom.
"""

from __future__ import annotations

import struct

from pynetdicom.dimse_primitives import C_STORE

__all__ = ["encode_store_response"]

_C_STORE_RSP = 0x8001
_NO_DATA_SET = 0x0101
_US = struct.Struct("<HHIH")  # tag group, tag element, length 2, unsigned short value
_HEADER = struct.Struct("<HHI")  # tag group, tag element, length


def _ui(element: int, uid: str) -> bytes:
    value = uid.encode("ascii")
    if len(value) % 2:
        value += b"\x00"  # UI values are padded to even length with a NUL (PS3.5 6.2)
    return _HEADER.pack(0x0000, element, len(value)) + value


def encode_store_response(primitive: C_STORE) -> bytes | None:
    """The encoded command set of a C-STORE response, or None to leave it to pynetdicom.

    None when the response carries an Offending Element or an Error Comment, lacks one of
    its mandatory values, or holds a value that is not what this encoder writes.
    """
    if primitive.MessageIDBeingRespondedTo is None or primitive.Status is None:
        return None
    if primitive.OffendingElement is not None or primitive.ErrorComment is not None:
        return None
    sop_class = primitive.AffectedSOPClassUID
    sop_instance = primitive.AffectedSOPInstanceUID
    if not sop_class or not sop_instance:
        return None
    try:
        body = b"".join(
            (
                _ui(0x0002, str(sop_class)),
                _US.pack(0x0000, 0x0100, 2, _C_STORE_RSP),
                _US.pack(0x0000, 0x0120, 2, int(primitive.MessageIDBeingRespondedTo)),
                _US.pack(0x0000, 0x0800, 2, _NO_DATA_SET),
                _US.pack(0x0000, 0x0900, 2, int(primitive.Status)),
                _ui(0x1000, str(sop_instance)),
            )
        )
    except (struct.error, UnicodeEncodeError, ValueError):
        return None
    return _HEADER.pack(0x0000, 0x0000, 4) + struct.pack("<I", len(body)) + body
