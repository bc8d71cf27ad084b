"""Deterministic DICOM UIDs, so that re-running a job writes the same objects again.

A result object must reach the PACS exactly once. Jobs may run twice (a worker died after
sending, a retry after a timeout); if each run minted fresh random UIDs, the PACS would
hold two copies of every SR. Instead every UID radpilot writes for a result is derived
from a stable key (study, model version, source) with SHA-256, so a re-run produces the
same SOP and Series Instance UIDs and the PACS treats the second copy as the same object.

The UIDs use the ``2.25`` root (ISO/IEC 9834-8, PS3.5 B.2): the decimal form of a UUID.
The UUID is the first 128 bits of the digest with the RFC 9562 variant and version 8
("custom") bits set, so it is a well-formed UUID and never collides with random (v4) or
name-based (v3/v5) UUIDs made by other systems.
"""

from __future__ import annotations

import hashlib

__all__ = ["MAX_UID_LENGTH", "uid_from"]

#: PS3.5 6.2: a UI value is at most 64 characters.
MAX_UID_LENGTH = 64
_SEPARATOR = "|"


def uid_from(*parts: str) -> str:
    """A ``2.25.`` UID that is a pure function of ``parts``.

    Parameters
    ----------
    parts
        The strings that identify the object; none may contain ``"|"`` (the separator
        hashed between them, which keeps ``("a|b", "c")`` and ``("a", "b|c")`` apart).

    Returns
    -------
    str
        A DICOM UID of at most 44 characters.

    Raises
    ------
    ValueError
        If no part is given or a part contains the separator.
    """
    if not parts:
        raise ValueError("uid_from() needs at least one part to hash")
    for part in parts:
        if _SEPARATOR in part:
            raise ValueError(
                f"UID key part {part!r} contains {_SEPARATOR!r}; use another character"
            )
    digest = hashlib.sha256(_SEPARATOR.join(parts).encode("utf-8")).digest()
    value = int.from_bytes(digest[:16], "big")
    value &= ~(0xF << 76)  # version nibble (bits 76-79)...
    value |= 0x8 << 76  # ...is 8: a custom, hash-derived UUID (RFC 9562 5.8)
    value &= ~(0x3 << 62)  # variant bits (62-63)...
    value |= 0x2 << 62  # ...are 10: the RFC 9562 variant
    return f"2.25.{value}"  # 2**128 has 39 digits: never over MAX_UID_LENGTH
