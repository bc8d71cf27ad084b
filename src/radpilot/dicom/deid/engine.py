"""The de-identification engine: one data set in, the same data set de-identified.

:class:`Deidentifier` applies PS3.15 Table E.1-1 (resolved for the options by
:mod:`.profile`) to every element at every depth of nesting, removes private attributes,
curves and overlays as the table says, replaces UIDs and patient identifiers by keyed
pseudonyms (:mod:`.pseudonym`), shifts dates per patient when the modified-dates option is
on, and records the method in the data set. Pixel data is never touched, so its bytes and
the transfer syntax survive unchanged.
"""

from __future__ import annotations

import collections
from collections.abc import Collection
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from radpilot import __version__
from radpilot.core.settings import DeidOptions
from radpilot.dicom.deid.marking import clean_file_meta, mark
from radpilot.dicom.deid.profile import Action, compile_profile, method_codes
from radpilot.dicom.deid.pseudonym import Pseudonymizer
from radpilot.dicom.deid.quarantine import quarantine_reason
from radpilot.dicom.deid.values import Redactor, Replacements, as_text

__all__ = ["DeidResult", "Deidentifier", "SafePrivateTag"]

# (private creator, group, element offset within the block) of private attributes kept.
SafePrivateTag = tuple[str, int, int]

# Z allows "a non-zero length dummy value": these get a keyed pseudonym instead of
# nothing, so that a patient's studies stay linked (Patient ID is Z/D, hence D).
_PATIENT_TAGS = frozenset({0x00100010, 0x00100020})  # Patient's Name, Patient ID
_LINK_TAGS = frozenset({0x00080050, 0x00200010})  # Accession Number, Study ID
# Values whose appearance inside a cleaned descriptor is redacted.
_IDENTIFYING = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientBirthDate",
    "AccessionNumber",
    "MedicalRecordLocator",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "OperatorsName",
    "RequestingPhysician",
    "InstitutionName",
)
_OVERLAY_DATA = 0x3000
_PIXEL_DATA = 0x7FE00010


@dataclass(slots=True)
class DeidResult:
    """What :meth:`Deidentifier.deidentify` did to one data set.

    Attributes
    ----------
    dataset
        The de-identified data set (the one passed in, changed in place).
    quarantine_reason
        Why the object must be held back for review (burned-in text, photographs ...), or
        ``None``. The data set is de-identified either way; the caller decides where it
        goes.
    actions
        Action code (``X``, ``Z``, ``D``, ``U``, ``K``, ``C``) -> number of elements.
    attributes
        ``(attribute keyword or tag, action code)`` -> number of elements: no values.
    """

    dataset: Dataset
    quarantine_reason: str | None
    actions: collections.Counter[str] = field(default_factory=collections.Counter)
    attributes: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)


@dataclass(slots=True)
class _Pass:
    """State of one :meth:`Deidentifier.deidentify` call."""

    patient: str
    days: int | None
    identifying: list[str]
    result: DeidResult
    redactor: Redactor | None = None

    def count(self, label: str, action: str) -> None:
        self.result.actions[action] += 1
        self.result.attributes[(label, action)] += 1

    def redact(self, text: str) -> str:
        if self.redactor is None:  # built on first use: most objects never need it
            self.redactor = Redactor(self.identifying)
        return self.redactor(text)


def _label(tag: int) -> str:
    return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _is_sequence(ds: Dataset, tag: BaseTag) -> bool:
    raw = ds.get_item(tag)
    vr: str | None = raw.VR
    if vr is None or vr == "UN":
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = None
        if vr != "SQ" and getattr(raw, "length", 0) == 0xFFFFFFFF and tag != _PIXEL_DATA:
            vr = ds[tag].VR  # an undefined-length UN element that pydicom reads as SQ
    return vr == "SQ"


class Deidentifier:
    """PS3.15 Basic Application Level Confidentiality Profile with radpilot's options.

    Parameters
    ----------
    key
        The installation's secret (``RADPILOT_DEID_KEY``), at least 16 bytes. The same key
        gives the same pseudonyms on every run and machine.
    options
        Which Table E.1-1 option columns apply.
    safe_private
        Private attributes to keep, as ``(creator, group, element offset)``; none by
        default (``docs/deid.md``). A non-empty list adds the Retain Safe Private Option
        code to the method sequence.

    Raises
    ------
    ConfigurationError
        If ``key`` is shorter than 16 bytes.

    Notes
    -----
    One instance may serve several threads (the receiver's associations): the state of a
    call lives in that call, and the shared memo of pseudonyms is a plain dict.
    """

    def __init__(
        self, key: bytes, options: DeidOptions, *, safe_private: Collection[SafePrivateTag] = ()
    ) -> None:
        self.options = options
        self.pseudonyms = Pseudonymizer(key)
        self._values = Replacements(self.pseudonyms)
        self.profile = compile_profile(options)
        self._safe_private = frozenset((c.strip(), g, e & 0xFF) for c, g, e in safe_private)
        self.method_codes = method_codes(options, safe_private=bool(self._safe_private))
        self._labels: dict[int, str] = {}

    def __repr__(self) -> str:
        return f"Deidentifier(options={self.options!r}, key=<hidden>)"

    @property
    def method_description(self) -> list[str]:
        """The values written to De-identification Method (0012,0063), each <= 64 chars."""
        head = f"radpilot {__version__} PS3.15 {self.profile.edition} Annex E"
        return [head, *(code.meaning for code in self.method_codes)]

    def patient_key(self, ds: Dataset) -> str:
        """What identifies the patient of ``ds`` for pseudonyms and date offsets.

        The Patient ID; without one, the Patient's Name; without either, the Study
        Instance UID (each such study is then a patient of its own).
        """
        for keyword, prefix in (
            ("PatientID", ""),
            ("PatientName", "name:"),
            ("StudyInstanceUID", "study:"),
        ):
            text = as_text(ds.get(keyword)).strip()
            if text:
                return prefix + text
        return "unknown"

    def deidentify(self, ds: Dataset) -> DeidResult:
        """De-identify ``ds`` in place and say what was done.

        Raises
        ------
        ValueError, TypeError
            If an element's value cannot be read or replaced (a malformed data set).
        """
        reason = quarantine_reason(ds)
        patient = self.patient_key(ds)
        days = self.pseudonyms.day_offset(patient) if self.options.retain_dates else None
        identifying = [as_text(ds.get(keyword)) for keyword in _IDENTIFYING]
        run = _Pass(patient, days, identifying, DeidResult(ds, reason))
        self._walk(ds, run)
        mark(
            ds, self.method_description, self.method_codes, dates_modified=self.options.retain_dates
        )
        clean_file_meta(ds)
        return run.result

    # the walk -------------------------------------------------------------------------
    def _walk(self, ds: Dataset, run: _Pass) -> None:
        actions = self.profile.actions
        overlay_groups: set[int] = set()
        for tag in list(ds.keys()):
            group = tag >> 16
            if group & 1:
                self._private(ds, tag, run)
                continue
            if tag & 0xFFFF == 0:
                del ds[tag]  # group lengths are retired and would be stale
                continue
            action = actions.get(tag)
            if action is None and group & 0xFF00 == 0x5000:
                action = self.profile.curve_action
            elif action is None and group & 0xFF00 == 0x6000:
                action = self.profile.overlay_actions.get(tag & 0xFFFF)
                if action is Action.REMOVE and tag & 0xFFFF == _OVERLAY_DATA:
                    overlay_groups.add(group)
            if action is not None:
                self._apply(ds, tag, action, run)
            elif _is_sequence(ds, tag):
                for item in ds[tag].value:
                    self._walk(item, run)
        # an overlay without its data is invalid: remove the rest of its group too
        for group in overlay_groups:
            # keys(): iterating a Dataset itself would convert every element
            for tag in [t for t in ds.keys() if t >> 16 == group]:  # noqa: SIM118
                del ds[tag]
                run.count("overlay group", Action.REMOVE)

    def _label(self, tag: int) -> str:
        label = self._labels.get(tag)
        if label is None:
            label = self._labels[tag] = _label(tag)
        return label

    def _private(self, ds: Dataset, tag: BaseTag, run: _Pass) -> None:
        if self._safe_private and self._is_safe_private(ds, tag):
            if _is_sequence(ds, tag):
                for item in ds[tag].value:
                    self._walk(item, run)
            return
        del ds[tag]
        run.count("private", Action.REMOVE)

    def _is_safe_private(self, ds: Dataset, tag: BaseTag) -> bool:
        group, element = tag >> 16, tag & 0xFFFF
        if 0x0010 <= element <= 0x00FF:  # a private creator: kept if its block keeps any
            creator = as_text(ds[tag].value).strip()
            return any(c == creator and g == group for c, g, _ in self._safe_private)
        block = element >> 8
        creator_tag = (group << 16) | block
        if block < 0x10 or creator_tag not in ds:
            return False
        creator = as_text(ds[creator_tag].value).strip()
        return (creator, group, element & 0xFF) in self._safe_private

    def _apply(self, ds: Dataset, tag: BaseTag, action: Action, run: _Pass) -> None:
        label = self._label(tag)
        if action is Action.REMOVE:
            del ds[tag]
            run.count(label, action)
            return
        elem = ds[tag]
        vr = elem.VR
        if vr == "SQ":
            if action is Action.ZERO:
                elem.value = Sequence()
            elif action is Action.DUMMY:
                elem.value = Sequence([Dataset()])
            else:
                for item in elem.value:
                    self._walk(item, run)
            run.count(label, action)
            return
        value = elem.value
        if action in (Action.ZERO, Action.DUMMY) and tag in _PATIENT_TAGS:
            elem.value = self.pseudonyms.patient_id(run.patient)
            action = Action.DUMMY
        elif action in (Action.ZERO, Action.DUMMY) and tag in _LINK_TAGS and as_text(value):
            elem.value = self.pseudonyms.token(f"link{tag:08X}", as_text(value), 16)
            action = Action.DUMMY
        elif action is Action.ZERO:
            elem.value = None
        elif action is Action.DUMMY:
            elem.value = self._values.dummy(vr, value)
        elif action is Action.UID:
            elem.value = self._values.uids(value) if vr == "UI" else self._values.dummy(vr, value)
        elif action is Action.CLEAN:
            elem.value = self._values.clean(vr, value, run.days, run.redact)
        run.count(label, action)
