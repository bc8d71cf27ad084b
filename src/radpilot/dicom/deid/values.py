"""The replacement values: dummies (D), UIDs (U) and cleaning (C), by Value Representation.

Every replacement is valid for its VR, so that the output passes validation (strict on
output). Text dummies are keyed tokens of the original value rather than one constant, so
that the same physician or device gets the same token in every file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from pydicom.multival import MultiValue
from pydicom.uid import UID

from radpilot.dicom.deid.pseudonym import Pseudonymizer, shift_date, shift_datetime

__all__ = ["Redactor", "Replacements", "as_list", "as_text"]

_TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UT", "UC", "PN"})
_MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "ST": 1024, "LT": 10240}
_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT"})
_BINARY_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN"})
_FIXED = {
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
}
_SPLIT = re.compile(r"[\^=\\\s,]+")


def as_list(value: Any) -> list[Any]:
    """The values of an element as a list (empty for ``None``)."""
    if value is None:
        return []
    if isinstance(value, list | tuple | MultiValue):
        return list(value)
    return [value]


def as_text(value: Any) -> str:
    """The values of an element joined by backslashes, as DICOM encodes them."""
    return "\\".join(str(v) for v in as_list(value))


class Redactor:
    """Replaces the patient's identifying words inside free text with ``***``.

    Parameters
    ----------
    identifying
        The original values of the identifying attributes (names, IDs, birth date ...),
        split into words; words shorter than two characters are ignored.
    """

    __slots__ = ("_pattern",)

    def __init__(self, identifying: Iterable[str]) -> None:
        words: set[str] = set()
        for value in identifying:
            words.add(value.strip())
            words.update(_SPLIT.split(value))
        words = {w for w in words if len(w.strip()) >= 2}
        self._pattern: re.Pattern[str] | None = None
        if words:
            alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
            self._pattern = re.compile(
                rf"(?<![0-9A-Za-z])(?:{alternatives})(?![0-9A-Za-z])", re.IGNORECASE
            )

    def __call__(self, text: str) -> str:
        """``text`` with every identifying word replaced."""
        return text if self._pattern is None else self._pattern.sub("***", text)


class Replacements:
    """Computes replacement values with one :class:`Pseudonymizer`."""

    __slots__ = ("pseudonyms",)

    def __init__(self, pseudonyms: Pseudonymizer) -> None:
        self.pseudonyms = pseudonyms

    def uids(self, value: Any) -> Any:
        """Each UID replaced by its pseudonym; well-known (registry) UIDs are kept."""

        def one(uid: Any) -> str:
            text = str(uid).strip().rstrip("\x00")
            if not text or UID(text).type:  # a transfer syntax or SOP class identifies no one
                return text
            return self.pseudonyms.uid(text)

        if isinstance(value, str) or value is None:
            return one(value or "")
        return [one(v) for v in value]

    def dummy(self, vr: str, value: Any) -> Any:
        """A non-empty value valid for ``vr`` (action D)."""
        if vr in _FIXED:
            return _FIXED[vr]
        if vr in _NUMBER_VRS:
            return 0
        if vr in _BINARY_VRS:
            return b"\x00" * 8
        if vr == "UI":
            return self.pseudonyms.uid(as_text(value))
        return self.pseudonyms.token("text", as_text(value), 16)

    def clean(self, vr: str, value: Any, days: int | None, redact: Callable[[str], str]) -> Any:
        """A value "of similar meaning known not to identify" (action C).

        Dates (DA, DT) are shifted by ``days`` (removed without a shift or when they are
        not dates); AE titles become tokens; text keeps its words except the identifying
        ones; times, codes and numbers are kept (a whole-day shift leaves times as they
        are).
        """
        if vr in ("DA", "DT"):
            if days is None:
                return None
            shift = shift_date if vr == "DA" else shift_datetime
            shifted = [shift(str(v), days) for v in as_list(value) if str(v).strip()]
            if not shifted or None in shifted:
                return None
            return shifted if len(shifted) > 1 else shifted[0]
        if vr == "AE":
            return self.pseudonyms.token("ae", as_text(value), 16)
        if vr == "UI":
            return self.uids(value)
        if vr in _TEXT_VRS and value:
            cleaned = redact(as_text(value))
            return cleaned[: _MAX_LENGTH.get(vr, len(cleaned))]
        return value
