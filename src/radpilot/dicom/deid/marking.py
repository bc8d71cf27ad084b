"""What a de-identified object says about itself, and its file meta information."""

from __future__ import annotations

from collections.abc import Sequence as SequenceOf

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from radpilot.dicom.deid.profile import MethodCode
from radpilot.dicom.deid.values import as_list

__all__ = ["clean_file_meta", "mark"]

_FILE_META_KEPT = frozenset(
    {0x00020000, 0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013}
)


def mark(
    ds: Dataset,
    description: SequenceOf[str],
    codes: SequenceOf[MethodCode],
    *,
    dates_modified: bool,
) -> None:
    """Set Patient Identity Removed, the De-identification Method and its code sequence
    (CID 7050, scheme DCM), and Longitudinal Temporal Information Modified.

    Earlier methods (an object de-identified before) are kept and ours appended.
    """
    ds.PatientIdentityRemoved = "YES"
    methods = [str(v) for v in as_list(ds.get("DeidentificationMethod")) if str(v)]
    ds.DeidentificationMethod = [*methods, *description]
    items = ds.get("DeidentificationMethodCodeSequence") or Sequence()
    for code in codes:
        item = Dataset()
        item.CodeValue = code.value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = code.meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = items
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if dates_modified else "REMOVED"


def clean_file_meta(ds: Dataset) -> None:
    """Keep only the file meta elements a Part 10 file needs, with the new UIDs.

    Source, sending and receiving AE titles and presentation addresses and private
    information go; the preamble, which may hold a TIFF header or anything, is zeroed.
    """
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        # keys(): iterating a Dataset itself would convert every element
        for tag in [t for t in meta.keys() if t not in _FILE_META_KEPT]:  # noqa: SIM118
            del meta[tag]
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if "SOPClassUID" in ds:
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if getattr(ds, "preamble", None) is not None:
        ds.preamble = b"\x00" * 128
