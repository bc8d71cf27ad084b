"""Attributes a derived image carries over from its source: orientation and references."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sr.coding import Code

from radpilot.models.prediction import ImageRef
from radpilot.results.common import frame_count

__all__ = ["patient_orientation", "source_image_item"]

_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))


def _direction(cosines: list[float]) -> str:
    """PS3.3 C.7.6.1.1.1: letters of the patient axes, most significant first."""
    order = sorted(range(3), key=lambda axis: -abs(cosines[axis]))
    return "".join(
        _LETTERS[axis][0 if cosines[axis] > 0 else 1] for axis in order if abs(cosines[axis]) > 1e-3
    )


def patient_orientation(ds: Dataset) -> list[str]:
    """The source's Patient Orientation, else one derived from Image Orientation (Patient).

    Returns an empty list (an empty value: type 2 "unknown") when neither is available.
    """
    value = ds.get("PatientOrientation")
    if isinstance(value, MultiValue) and len(value) == 2 and all(value):
        return [str(v) for v in value]
    cosines = ds.get("ImageOrientationPatient")
    if isinstance(cosines, MultiValue) and len(cosines) == 6:
        row = _direction([float(v) for v in cosines[:3]])
        column = _direction([float(v) for v in cosines[3:]])
        if row and column:
            return [row, column]
    return []


def source_image_item(image: ImageRef, ds: Dataset, purpose: Code) -> Dataset:
    """An item of Source Image Sequence (0008,2112) naming ``image`` and why it is used."""
    item = Dataset()
    item.ReferencedSOPClassUID = image.sop_class_uid
    item.ReferencedSOPInstanceUID = image.sop_instance_uid
    if frame_count(ds) > 1:
        item.ReferencedFrameNumber = image.frame
    code = Dataset()
    code.CodeValue = purpose.value
    code.CodingSchemeDesignator = purpose.scheme_designator
    code.CodeMeaning = purpose.meaning
    item.PurposeOfReferenceCodeSequence = [code]
    return item
