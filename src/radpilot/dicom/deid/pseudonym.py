"""Keyed pseudonyms: HMAC-SHA256 with the installation's secret key.

The same input and the same key give the same pseudonym on every run and every machine,
which is what keeps studies of one patient linked and references between objects intact;
without the key a pseudonym cannot be reversed or recomputed from a guessed identifier.
Each kind of value has its own domain-separation label, so that a patient ID and a UID
with the same text never share a pseudonym. The key is held in memory only: it is never
logged, written or put into an exception message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re

from radpilot.core.errors import ConfigurationError

__all__ = ["MIN_KEY_BYTES", "Pseudonymizer", "shift_date", "shift_datetime"]

MIN_KEY_BYTES = 16
# Pseudonyms are memoised (a series repeats its study and series UIDs in every file); the
# memo is dropped when it grows past this, so that a long-running receiver stays small.
_CACHE_LIMIT = 100_000
# Shift dates back by 1 to 10 years (never 0, never into the future).
MIN_SHIFT_DAYS = 365
MAX_SHIFT_DAYS = 3652
_DATE = re.compile(r"^([0-9]{4})([0-9]{2})?([0-9]{2})?$")
_DATETIME = re.compile(r"^([0-9]{4})([0-9]{2})?([0-9]{2})?(.*)$")


class Pseudonymizer:
    """Deterministic keyed pseudonyms for UIDs, identifiers, names and date offsets.

    Parameters
    ----------
    key
        The secret, at least :data:`MIN_KEY_BYTES` bytes.

    Raises
    ------
    ConfigurationError
        If the key is shorter than :data:`MIN_KEY_BYTES` bytes.
    """

    __slots__ = ("_cache", "_key")

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigurationError(
                f"the de-identification key has fewer than {MIN_KEY_BYTES} bytes; set "
                "RADPILOT_DEID_KEY to a long random secret, e.g. the output of "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        self._key = key
        self._cache: dict[tuple[str, str], str] = {}

    def __repr__(self) -> str:
        return "Pseudonymizer(key=<hidden>)"

    def digest(self, domain: str, value: str) -> bytes:
        """HMAC-SHA256 of ``value`` under a domain-separation label."""
        message = domain.encode("ascii") + b"\x00" + value.encode("utf-8", "surrogateescape")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def uid(self, value: str) -> str:
        """A valid DICOM UID for ``value``: ``2.25.<UUID as integer>``, at most 44 chars.

        The UUID is RFC 9562 version 8 (custom) built from the first 16 bytes of the
        HMAC, as PS3.5 B.2 allows for UUID-derived UIDs.
        """
        cached = self._cache.get(("uid", value))
        if cached is not None:
            return cached
        raw = bytearray(self.digest("uid", value)[:16])
        raw[6] = (raw[6] & 0x0F) | 0x80  # version 8
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
        result = f"2.25.{int.from_bytes(raw, 'big')}"
        self._remember(("uid", value), result)
        return result

    def token(self, domain: str, value: str, length: int = 16) -> str:
        """An upper-case hex token of ``length`` characters (valid in CS, SH, LO, PN, AE)."""
        cached = self._cache.get((domain, value))
        if cached is None:
            cached = self.digest(domain, value).hex().upper()
            self._remember((domain, value), cached)
        return cached[:length]

    def _remember(self, key: tuple[str, str], value: str) -> None:
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = value

    def patient_id(self, value: str) -> str:
        """The pseudonym that replaces a Patient ID (and the Patient's Name)."""
        return "P" + self.token("patient", value, 15)

    def day_offset(self, patient: str) -> int:
        """Days (negative) by which every date of this patient is shifted."""
        number = int.from_bytes(self.digest("days", patient)[:8], "big")
        return -(MIN_SHIFT_DAYS + number % (MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1))

    def ref(self, value: str) -> str:
        """A short keyed reference, safe to record, for a file path or other handle."""
        return self.token("ref", value, 16).lower()


def shift_date(value: str, days: int) -> str | None:
    """Shift a DA value (``YYYYMMDD``; ``YYYY`` and ``YYYYMM`` keep their precision).

    Returns ``None`` if ``value`` is not a date, so that the caller can remove it instead.
    """
    match = _DATE.match(value.strip())
    if match is None:
        return None
    year, month, day = match.groups()
    try:
        start = dt.date(int(year), int(month or 1), int(day or 1))
        moved = start + dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    text = f"{moved.year:04d}{moved.month:02d}{moved.day:02d}"
    return text[: len(value.strip())]


def shift_datetime(value: str, days: int) -> str | None:
    """Shift the date part of a DT value, keeping its time, precision and UTC offset.

    Returns ``None`` if ``value`` does not start with a date.
    """
    match = _DATETIME.match(value.strip())
    if match is None:
        return None
    year, month, day, rest = match.groups()
    date_part = year + (month or "") + (day or "")
    if rest and (month is None or day is None) and not rest.startswith(("+", "-")):
        return None  # a time cannot follow a partial date
    shifted = shift_date(date_part, days)
    return None if shifted is None else shifted + rest
