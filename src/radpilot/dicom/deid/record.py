"""The PHI-free record of one de-identification run.

It holds counts, action codes, attribute keywords and keyed references to files, never a
value, a patient identifier or a file name: a file is named by
:meth:`Pseudonymizer.ref` of its path relative to the input folder, which someone holding
the key can recompute to find it, and no one else can.
"""

from __future__ import annotations

import collections
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from radpilot import __version__
from radpilot.core.settings import DeidOptions
from radpilot.dicom.deid.engine import Deidentifier, DeidResult

__all__ = ["SCHEMA", "DeidRunRecord", "FileNote"]

SCHEMA = "radpilot/deid-record/1"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class FileNote:
    """One file that was not passed on: its keyed reference and a PHI-free reason."""

    ref: str
    reason: str
    file: str | None = None  # its name inside the quarantine folder, where it was copied


@dataclass(slots=True)
class DeidRunRecord:
    """Counts and notes of one run; :meth:`to_json` is what is stored and written."""

    options: DeidOptions
    edition: str
    method_codes: list[str]
    started_at: dt.datetime = field(default_factory=_now)
    finished_at: dt.datetime | None = None
    seen: int = 0
    written: int = 0
    duplicates: int = 0
    conflicts: int = 0
    actions: collections.Counter[str] = field(default_factory=collections.Counter)
    attributes: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    quarantined: list[FileNote] = field(default_factory=list)
    rejected: list[FileNote] = field(default_factory=list)
    skipped: list[FileNote] = field(default_factory=list)

    @classmethod
    def begin(cls, deidentifier: Deidentifier) -> DeidRunRecord:
        """A new record for a run with ``deidentifier``'s options."""
        return cls(
            options=deidentifier.options,
            edition=deidentifier.profile.edition,
            method_codes=[code.value for code in deidentifier.method_codes],
        )

    @property
    def profile(self) -> str:
        """One line naming the profile and options, e.g. for the ``deid_runs`` table."""
        enabled = [name for name, on in self.options.model_dump().items() if on]
        return f"PS3.15 {self.edition} Basic Application Level Confidentiality Profile" + (
            f" + {', '.join(enabled)}" if enabled else ""
        )

    def add(self, result: DeidResult) -> None:
        """Count what the engine did to one data set."""
        self.actions.update(result.actions)
        self.attributes.update(result.attributes)

    def finish(self) -> None:
        """Stamp the end of the run."""
        self.finished_at = _now()

    @staticmethod
    def _reasons(notes: list[FileNote]) -> dict[str, int]:
        return dict(collections.Counter(note.reason for note in notes).most_common())

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: counts, actions, attributes and file notes, no PHI."""
        attributes: dict[str, dict[str, int]] = {}
        for (label, action), count in sorted(self.attributes.items()):
            attributes.setdefault(label, {})[action] = count
        seconds = (self.finished_at - self.started_at).total_seconds() if self.finished_at else None
        return {
            "schema": SCHEMA,
            "software": f"radpilot {__version__}",
            "standard": f"DICOM PS3.15 {self.edition} Annex E, Table E.1-1",
            "profile": self.profile,
            "options": self.options.model_dump(),
            "method_codes": self.method_codes,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "seconds": seconds,
            "files": {
                "seen": self.seen,
                "deidentified": self.written,
                "duplicates": self.duplicates,
                "conflicts": self.conflicts,
                "quarantined": len(self.quarantined),
                "rejected": len(self.rejected),
                "skipped": len(self.skipped),
            },
            "actions": dict(sorted(self.actions.items())),
            "attributes": attributes,
            "quarantine_reasons": self._reasons(self.quarantined),
            "reject_reasons": self._reasons(self.rejected),
            "skip_reasons": self._reasons(self.skipped),
            "quarantined": [
                {"ref": n.ref, "file": n.file, "reason": n.reason} for n in self.quarantined
            ],
            "rejected": [{"ref": n.ref, "reason": n.reason} for n in self.rejected],
            "skipped": [{"ref": n.ref, "reason": n.reason} for n in self.skipped],
        }
