"""What every result writer needs to know besides the prediction: which model, which job.

The job runner builds one :class:`ResultContext` per (study, model version, source) and
hands it to each builder (:mod:`~radpilot.results.sr`, :mod:`~radpilot.results.seg`,
:mod:`~radpilot.results.keyimage`, :mod:`~radpilot.results.derived`,
:mod:`~radpilot.results.report`). The context makes the UIDs deterministic and carries the
model's identity (name, version, weight hash) into every object written.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from radpilot.core.errors import RadpilotError
from radpilot.results.uids import uid_from

__all__ = ["SERIES_NUMBERS", "ResultContext", "ResultError", "ResultKind"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ResultError(RadpilotError, ValueError):
    """A prediction cannot be written as the requested result object.

    The message says what is missing (no masks for a SEG, no enhanced image for a derived
    series, a source image the prediction names but the caller did not pass) and how to
    fix the call.
    """


class ResultKind(enum.StrEnum):
    """The kinds of object written for a result; each gets its own series."""

    SR = "sr"
    KEY_IMAGE = "sc"
    SEG = "seg"
    DERIVED = "derived"


#: Fixed Series Numbers per kind, so that viewers sort AI series after the acquisitions.
SERIES_NUMBERS: dict[ResultKind, int] = {
    ResultKind.SR: 9001,
    ResultKind.KEY_IMAGE: 9002,
    ResultKind.SEG: 9003,
    ResultKind.DERIVED: 9004,
}


@dataclass(frozen=True)
class ResultContext:
    """The model and job a result belongs to.

    Attributes
    ----------
    model_name, model_version
        As in the model's manifest; written into every object.
    weights_sha256
        SHA-256 of the weights file (64 lowercase hex digits), written next to the version
        so that a result can be traced to the exact weights that produced it.
    manufacturer
        Who made the model (the DICOM Manufacturer of the AI "device").
    task
        The manifest's task (``classification``, ``segmentation``, ...).
    operating_point
        Name of the operating point the findings were thresholded with, if any.
    result_key
        A stable string for this result (the runner derives it from the Study Instance
        UID, the model version and the source); every UID is hashed from it.
    institution_name
        Written as Institution Name of the AI equipment, if given.
    """

    model_name: str
    model_version: str
    weights_sha256: str
    manufacturer: str
    task: str
    operating_point: str | None
    result_key: str
    institution_name: str | None = None

    def __post_init__(self) -> None:
        """Check the identity fields, which end up in every object written.

        Raises
        ------
        ResultError
            If the weight hash is not a SHA-256 hex digest, or a name, version,
            manufacturer or result key is empty.
        """
        if not _SHA256.match(self.weights_sha256):
            raise ResultError(
                "weights_sha256 must be the 64 lowercase hex digits of the weights' SHA-256 "
                f"(got {len(self.weights_sha256)} characters); use hashlib.sha256(...).hexdigest()"
            )
        for name in ("model_name", "model_version", "manufacturer", "result_key"):
            if not getattr(self, name).strip():
                raise ResultError(f"ResultContext.{name} is empty; pass the manifest's value")
        if "|" in self.result_key:
            raise ResultError("ResultContext.result_key must not contain '|' (UID separator)")

    @property
    def model_label(self) -> str:
        """``"<name> <version>"``, as shown to people."""
        return f"{self.model_name} {self.model_version}"

    @property
    def device_uid(self) -> str:
        """The UID of the model as an SR Device Observer: the same for every result."""
        return uid_from("radpilot-model", self.model_name, self.model_version, self.weights_sha256)

    def uid(self, kind: str, index: int = 0) -> str:
        """A UID for one object of this result, the same on every run.

        Parameters
        ----------
        kind
            What the UID names, e.g. ``"sr"``, ``"sr-series"``, ``"derived"``.
        index
            Distinguishes several objects of one kind (derived instances, tracking UIDs).

        Returns
        -------
        str
            ``2.25.<decimal>``: 128 bits of SHA-256(result_key | kind | index).

        Raises
        ------
        ResultError
            If ``kind`` is empty or contains ``"|"``, or ``index`` is negative.
        """
        if not kind or "|" in kind:
            raise ResultError(f"UID kind {kind!r} must be non-empty and free of '|'")
        if index < 0:
            raise ResultError(f"UID index must be 0 or more, got {index}")
        return uid_from(self.result_key, kind, str(index))

    def series_number(self, kind: str | ResultKind) -> int:
        """The fixed Series Number of a result series.

        Parameters
        ----------
        kind
            A :class:`ResultKind` or its value (``"sr"``, ``"sc"``, ``"seg"``,
            ``"derived"``); a ``"-series"`` suffix is accepted.

        Returns
        -------
        int
            9001 (SR), 9002 (key image), 9003 (SEG) or 9004 (derived series).

        Raises
        ------
        ResultError
            If ``kind`` is none of these.
        """
        name = str(kind).removesuffix("-series")
        try:
            return SERIES_NUMBERS[ResultKind(name)]
        except ValueError:
            known = ", ".join(k.value for k in ResultKind)
            raise ResultError(f"unknown result kind {kind!r}; use one of {known}") from None
