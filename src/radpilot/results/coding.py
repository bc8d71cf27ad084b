"""Coded concepts for labels, scores and units in result objects.

DICOM SR and SEG name things with codes (scheme, value, meaning). Where a model's label
has a standard concept (SNOMED CT, as listed in DICOM PS3.16 and pydicom's dictionary),
radpilot uses it, so that a PACS or viewer that understands SNOMED recognises the finding.
Any other label gets a code in the private coding scheme ``99RADPILOT`` (PS3.16 8.2:
private schemes start with ``99``); its meaning is the label itself, so a person still
reads it. The score is a numeric value with UCUM unit ``1`` ("no units"): models output
scores in [0, 1] that are not necessarily calibrated probabilities, so the concept is
"Score", not "Probability".
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata

from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

__all__ = [
    "PRIVATE_SCHEME",
    "SCORE",
    "UNITLESS",
    "label_concept",
    "measurement_concept",
    "presence_concept",
    "private_scheme_identification",
    "segment_category",
    "text_value",
    "unit_concept",
]

PRIVATE_SCHEME = "99RADPILOT"

#: The model's score for a label: SNOMED CT "Score (attribute)".
SCORE = CodedConcept(value="246262008", scheme_designator="SCT", meaning="Score")
#: UCUM's dimensionless unit, as DICOM CID 7181 spells it.
UNITLESS = CodedConcept(value="1", scheme_designator="UCUM", meaning="no units")

# Labels with a standard concept. Keys are normalised labels (lower case, words separated
# by one space); codes come from pydicom's copy of DICOM PS3.16 where it has them.
_SNOMED_LABELS: dict[str, Code] = {
    "pneumonia": Code("233604007", "SCT", "Pneumonia"),
    "pneumothorax": codes.SCT.Pneumothorax,
    "pleural effusion": codes.SCT.PleuralEffusion,
    "effusion": codes.SCT.Effusion,
    "cardiomegaly": codes.SCT.Cardiomegaly,
    "nodule": codes.SCT.Nodule,
    "mass": codes.SCT.Mass,
    "lesion": codes.SCT.Lesion,
    "edema": codes.SCT.Edema,
    "oedema": codes.SCT.Edema,
    "hemorrhage": codes.SCT.Hemorrhage,
    "tumor": codes.SCT.Tumor,
    "normal": codes.SCT.Normal,
    "liver": codes.SCT.Liver,
    "lung": codes.SCT.Lung,
    "heart": codes.SCT.Heart,
    "kidney": codes.SCT.Kidney,
    "spleen": codes.SCT.Spleen,
}
_ANATOMY = {"liver", "lung", "heart", "kidney", "spleen"}

_MEASUREMENTS: dict[str, Code] = {
    "volume": codes.SCT.Volume,
    "area": codes.SCT.Area,
    "diameter": codes.SCT.Diameter,
    "length": codes.SCT.Length,
    "long axis": codes.SCT.LongAxis,
    "short axis": codes.SCT.ShortAxis,
    "width": codes.SCT.Width,
    "perimeter": codes.SCT.Perimeter,
}

_SAFE_CODE_VALUE = re.compile(r"^[A-Za-z0-9_.+()-]{1,16}$")
_MAX_MEANING = 64  # CodeMeaning is LO


def _normalise(label: str) -> str:
    return " ".join(re.split(r"[\s_-]+", label.strip().lower()))


def text_value(text: str) -> str:
    """``text`` without control characters, which no DICOM text VR may hold."""
    return "".join(c for c in text if unicodedata.category(c) != "Cc")


def _meaning(text: str) -> str:
    # LO values are single-valued only without backslashes; at most 64 characters.
    cleaned = text_value(text).replace("\\", "/").strip() or "(unnamed)"
    return cleaned[:_MAX_MEANING]


def _private(kind: str, name: str) -> CodedConcept:
    if _SAFE_CODE_VALUE.match(name):
        value = name
    else:
        # Not a valid short code value (too long, spaces, backslash, non-ASCII): a stable
        # digest of the name, so the same name always gets the same code.
        value = kind[0].upper() + hashlib.sha256(name.encode("utf-8")).hexdigest()[:15]
    return CodedConcept(value=value, scheme_designator=PRIVATE_SCHEME, meaning=_meaning(name))


def private_scheme_identification() -> Dataset:
    """The Coding Scheme Identification Sequence item that declares ``99RADPILOT``."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = "radpilot model output labels and measurement names"
    item.CodingSchemeResponsibleOrganization = "radpilot"
    return item


def label_concept(label: str) -> CodedConcept:
    """The coded concept for a model's output label (SNOMED CT if known, else private).

    Parameters
    ----------
    label
        The label as the manifest spells it.

    Returns
    -------
    CodedConcept
        A SNOMED CT concept for well-known findings and structures, else a
        ``99RADPILOT`` code whose meaning is the label.
    """
    code = _SNOMED_LABELS.get(_normalise(label))
    if code is not None:
        return CodedConcept.from_code(code)
    return _private("label", label)


def segment_category(label: str) -> CodedConcept:
    """The Segmented Property Category of a label: anatomy or abnormal structure."""
    if _normalise(label) in _ANATOMY:
        return CodedConcept.from_code(codes.SCT.AnatomicalStructure)
    return CodedConcept.from_code(codes.SCT.MorphologicallyAbnormalStructure)


def measurement_concept(name: str) -> CodedConcept:
    """The concept for a measurement's name (SNOMED CT for common ones, else private)."""
    code = _MEASUREMENTS.get(_normalise(name))
    if code is not None:
        return CodedConcept.from_code(code)
    return _private("measurement", name)


def presence_concept(positive: bool, assessed: bool) -> CodedConcept:
    """Present / Absent, or Presence Undetermined when no operating point was applied."""
    if positive:
        return CodedConcept.from_code(codes.SCT.Present)
    if assessed:
        return CodedConcept.from_code(codes.SCT.Absent)
    return CodedConcept.from_code(codes.DCM.PresenceUndetermined)


@functools.cache
def _ucum_meanings() -> dict[str, str]:
    meanings: dict[str, str] = {}
    for keyword in codes.UCUM.dir():
        code = getattr(codes.UCUM, keyword)
        meanings.setdefault(code.value, code.meaning)
    return meanings


def unit_concept(unit: str) -> CodedConcept:
    """A UCUM unit as a coded concept (meaning from DICOM's table where listed).

    Raises
    ------
    ValueError
        If ``unit`` is empty or contains spaces or control characters (not UCUM).
    """
    if not unit or any(c.isspace() or unicodedata.category(c) == "Cc" for c in unit):
        raise ValueError(f"{unit!r} is not a UCUM unit; use e.g. 'mm', 'mm2', 'cm3', '1'")
    return CodedConcept(
        value=unit, scheme_designator="UCUM", meaning=_ucum_meanings().get(unit, unit)
    )
