"""Source image headers fit for highdicom's TID 1600 Image Library.

highdicom describes CT/MR/PET images with their geometry (TID 1604) and projection
radiographs with orientation and imager spacing (TID 1603), and raises when an attribute
it wants is absent or empty, which real PACS data often is (a CR without Patient
Orientation, a CT without Slice Thickness). Rather than losing the whole SR, an image
whose modality-specific attributes are incomplete is described by the generic
descriptors only (modality, frame of reference, rows, columns): its copy is labelled
``OT`` for highdicom, the SOP class still gives the coded modality.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from highdicom.sr import ImageLibraryEntryDescriptors
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from radpilot.core.logging import ref

__all__ = ["library_headers"]

log = logging.getLogger(__name__)

_COMMON = ("SOPClassUID", "SOPInstanceUID", "Modality", "FrameOfReferenceUID", "Rows", "Columns")
_CROSS_SECTIONAL = {"CT", "MR", "PT"}
_CROSS_SECTIONAL_KEYS = (
    "PixelSpacing",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "SliceThickness",
)
_PROJECTION = {"CR", "DX", "IO", "MG", "PX", "RF", "RG", "XA"}
_PROJECTION_KEYS = ("PatientOrientation", "ImagerPixelSpacing")
_SIZES = {
    "PixelSpacing": 2,
    "ImageOrientationPatient": 6,
    "ImagePositionPatient": 3,
    "SliceThickness": 1,
    "PatientOrientation": 2,
    "ImagerPixelSpacing": 2,
}


def _complete(ds: Dataset, keys: Sequence[str]) -> bool:
    for key in keys:
        value = ds.get(key)
        if value is None or value == "":
            return False
        count = len(value) if isinstance(value, MultiValue | list | tuple) else 1
        if count != _SIZES[key]:
            return False
    return True


def _header(ds: Dataset) -> Dataset:
    header = Dataset()
    modality = str(ds.get("Modality", ""))
    keys: tuple[str, ...] = ()
    if modality in _CROSS_SECTIONAL:
        keys = (*_CROSS_SECTIONAL_KEYS, "SpacingBetweenSlices")
        if not _complete(ds, _CROSS_SECTIONAL_KEYS):
            modality, keys = "OT", ()
    elif modality in _PROJECTION:
        keys = _PROJECTION_KEYS
        if not _complete(ds, _PROJECTION_KEYS):
            modality, keys = "OT", ()
    for key in (*_COMMON, *keys):
        if key in ds and ds[key].value not in (None, ""):
            header[key] = ds[key]
    header.Modality = modality or "OT"
    return header


# Header kinds highdicom accepted, for the life of the process (a few per modality).
_ACCEPTED: set[tuple[str, ...]] = set()


def library_headers(sources: Sequence[Dataset], *, probe_all: bool = False) -> list[Dataset]:
    """One header per distinct source image that highdicom can describe.

    Non-image objects and image SOP classes highdicom has no coded modality for are
    left out of the library (they remain listed as evidence). Whether highdicom accepts a
    header is tried on the first header of each kind (modality, SOP class and attributes
    present) that this process sees: the slices of a series, and the radiographs of one
    kind of device, share it, and building the entry twice for each of 300 slices cost
    seconds (for a single radiograph the probe was a tenth of building its SR).
    ``probe_all`` tries every header, for the caller whose SR highdicom refused with the
    quick check (one image malformed where the first of its kind was not).
    """
    headers: dict[str, Dataset] = {}
    for ds in sources:
        uid = str(ds.SOPInstanceUID)
        if uid in headers or "Rows" not in ds or "Columns" not in ds:
            continue
        header = _header(ds)
        kind = (str(header.Modality), str(header.get("SOPClassUID", "")), *header.dir())
        if not probe_all and kind in _ACCEPTED:
            headers[uid] = header
            continue
        try:
            ImageLibraryEntryDescriptors(header)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            # kept as evidence in the SR, only not described in its image library
            log.info(
                "image %s left out of the SR image library: highdicom refused its "
                "header (%s: %s)", ref(uid), type(exc).__name__, str(exc)[:200],
            )  # fmt: skip
            continue
        _ACCEPTED.add(kind)
        headers[uid] = header
    return list(headers.values())
