"""A received C-STORE data set assembled straight into the image of its Part 10 file.

pynetdicom appends each data set fragment of a DIMSE message to a ``BytesIO``. The
receiver archives the data set as a Part 10 file: preamble, File Meta Information, then
the data set's bytes untouched. Joining the two after the last fragment copies the whole
image once more, a fresh allocation of its size each time. :class:`Part10Buffer` writes the
preamble and file meta into the message's buffer when the first data set fragment
arrives (the command set, which names the SOP class and instance, always comes first), so
the complete file is the buffer's value.
"""

from __future__ import annotations

from io import BytesIO
from typing import TYPE_CHECKING

from pynetdicom.dimse_messages import C_STORE_RQ, DIMSEMessage

from radpilot.dicom.writing import part10_header

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer
    from pynetdicom.association import Association

__all__ = ["Part10Buffer", "received_file"]


class Part10Buffer(BytesIO):
    """The data set buffer of one DIMSE message.

    For a C-STORE request the buffer starts with the Part 10 header and
    :attr:`header_length` says how long it is; for any other message, or when the header
    cannot be built from the command set (the handler then refuses the request), it holds
    the data set alone and :attr:`header_length` is 0.
    """

    def __init__(self, message: DIMSEMessage, assoc: Association) -> None:
        super().__init__()
        self.header_length = 0
        self._message: DIMSEMessage | None = message
        self._assoc = assoc

    def write(self, data: ReadableBuffer, /) -> int:
        """Append a fragment; before the first, the Part 10 header of a C-STORE request."""
        message, self._message = self._message, None
        if message is not None and type(message) is C_STORE_RQ:
            header = self._header(message)
            if header:
                super().write(header)
                self.header_length = len(header)
        return super().write(data)

    def _header(self, message: DIMSEMessage) -> bytes | None:
        command = message.command_set
        if message.context_id is None:
            return None
        try:
            context = self._assoc._accepted_cx[message.context_id]  # as pynetdicom reads it
            return part10_header(
                str(command.AffectedSOPClassUID),
                str(command.AffectedSOPInstanceUID),
                str(context.transfer_syntax[0]),
                str(self._assoc.requestor.ae_title).strip(),
            )
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            return None  # UnicodeEncodeError is a ValueError


def received_file(dataset: object) -> bytes | None:
    """The complete Part 10 file of a C-STORE request, if its buffer holds one."""
    if isinstance(dataset, Part10Buffer) and dataset.header_length:
        return dataset.getvalue()
    return None
