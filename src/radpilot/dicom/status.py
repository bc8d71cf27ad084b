"""DIMSE status codes radpilot answers with (PS3.4 Annex B.2.3, PS3.7 Annex C)."""

from __future__ import annotations

import enum

__all__ = ["Status"]


class Status(enum.IntEnum):
    """C-STORE response statuses used by the receiver."""

    SUCCESS = 0x0000
    #: Refused: out of resources (disk below the floor, disk full).
    OUT_OF_RESOURCES = 0xA700
    #: Error: data set does not match SOP class (UIDs differ from the request).
    DATASET_DOES_NOT_MATCH = 0xA900
    #: Error: cannot understand (unparseable or incomplete data).
    CANNOT_UNDERSTAND = 0xC000
    #: Failure: processing failure (an unexpected error inside radpilot).
    PROCESSING_FAILURE = 0x0110
