"""Reading P-DATA-TF PDUs with two copies of each byte instead of about eight.

pynetdicom reads a PDU into a ``bytearray`` piecewise, copies it into another, then into
``bytes`` for decoding, slices each presentation data value out of it, and the DIMSE layer
slices off the message control header before it appends the fragment to the data set's
buffer: by a count of pynetdicom's code, each received byte was copied about eight times.
:func:`read_pdata` reads the PDU's body straight into one buffer (``recv_into``) and
hands the DIMSE layer ``memoryview`` slices of it, which pynetdicom's ``decode_msg``
indexes and writes exactly as it does ``bytes``; the copies left are the read itself and
the append to the data set.

The PDU structure is checked as pynetdicom checks it (PS3.8 9.3.5): each item's length
must leave room for its context ID and control header and must not run past the PDU.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol

from pynetdicom.pdu_primitives import P_DATA

__all__ = ["FastPData", "MalformedPDUError", "parse_items", "read_pdata"]

_ITEM_LENGTH = struct.Struct(">L")


class MalformedPDUError(ValueError):
    """The P-DATA-TF PDU's items do not add up to its length."""


class _Socket(Protocol):
    def recv_into(self, buffer: memoryview, nbytes: int) -> int: ...


@dataclass(slots=True)
class FastPData:
    """A received P-DATA-TF PDU as the state machine wants it: ``to_primitive()``."""

    items: list[tuple[int, memoryview]]

    def to_primitive(self) -> P_DATA:
        """The P-DATA indication for the DIMSE layer (data values as memoryviews)."""
        primitive = P_DATA()
        # As pynetdicom's own P_DATA_TF.to_primitive: start empty, then append (the setter
        # would insist on bytes).
        primitive.presentation_data_value_list = []
        primitive.presentation_data_value_list.extend(self.items)  # type: ignore[arg-type]
        return primitive


def read_pdata(sock: _Socket, length: int) -> memoryview | None:
    """Read a PDU body of ``length`` bytes into one buffer; None if the peer closed early."""
    buffer = bytearray(length)
    view = memoryview(buffer)
    got = 0
    while got < length:
        n = sock.recv_into(view[got:], length - got)
        if n == 0:
            return None
        got += n
    return view


def parse_items(body: memoryview) -> FastPData:
    """The presentation data value items of a P-DATA-TF body (PS3.8 Table 9-23).

    Raises
    ------
    MalformedPDUError
        If an item is shorter than its context ID and control header, or runs past the
        end of the PDU.
    """
    items: list[tuple[int, memoryview]] = []
    offset, end = 0, len(body)
    while offset < end:
        if offset + 4 > end:
            raise MalformedPDUError("a PDV item's length field runs past the PDU")
        (item_length,) = _ITEM_LENGTH.unpack_from(body, offset)
        if item_length < 2 or offset + 4 + item_length > end:
            raise MalformedPDUError(f"a PDV item declares {item_length} bytes")
        context_id = body[offset + 4]
        items.append((context_id, body[offset + 5 : offset + 4 + item_length]))
        offset += 4 + item_length
    return FastPData(items)
