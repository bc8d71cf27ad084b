"""Wrap real radiograph pixels as DICOM studies (demo, tests, benchmarks, stress tests).

PneumoniaMNIST's images are real paediatric chest radiographs at 28 x 28; a radiograph
study as a PACS would send it is a DX For Presentation image of some hundred pixels or
more, 12 bits stored in 16. :func:`radiograph` upsamples the real pixels (bilinear) to
that size and writes the header a chest radiograph carries. The result is honest about
its origin: Manufacturer ``radpilot synth`` and the source dataset and index in
ImageComments, never mistaken for a patient's image.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian

from radpilot.dicom.writing import IMPLEMENTATION_CLASS_UID

__all__ = ["SynthCase", "deterministic_uid", "pneumoniamnist_cases", "radiograph"]


def deterministic_uid(*parts: object) -> str:
    """A UID under 2.25 derived from ``parts`` (same parts, same UID)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


@dataclass(frozen=True)
class SynthCase:
    """One source image and who it pretends to belong to."""

    image: npt.NDArray[np.uint8]
    label: int
    source: str  # e.g. "pneumoniamnist/test/17"
    patient_id: str
    age_years: int
    sex: str


def _upsample(image: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.uint16]:
    rows, cols = image.shape
    y = np.linspace(0, rows - 1, size)
    x = np.linspace(0, cols - 1, size)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, rows - 1), np.minimum(x0 + 1, cols - 1)
    wy, wx = (y - y0)[:, None], (x - x0)[None, :]
    img = image.astype(np.float64)
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    values = (top * (1 - wy) + bottom * wy) * (4095.0 / 255.0)
    upsampled: npt.NDArray[np.uint16] = np.clip(np.rint(values), 0, 4095).astype(np.uint16)
    return upsampled


def radiograph(case: SynthCase, *, size: int = 512, seed: str = "radpilot") -> Dataset:
    """A DX For Presentation chest radiograph study (one image) from ``case``.

    UIDs are derived from ``seed`` and the case's source, so the same call gives the
    same bytes.
    """
    key = (seed, case.source)
    study_date = dt.date(2026, 1, 1) + dt.timedelta(days=int(deterministic_uid(*key)[-3:]) % 300)
    ds = Dataset()
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = deterministic_uid(*key, "instance")
    ds.StudyInstanceUID = deterministic_uid(*key, "study")
    ds.SeriesInstanceUID = deterministic_uid(*key, "series")
    ds.FrameOfReferenceUID = deterministic_uid(*key, "frame")
    ds.PatientName = f"SYNTH^{case.patient_id}"
    ds.PatientID = case.patient_id
    ds.PatientBirthDate = f"{study_date.year - case.age_years:04d}0101"
    ds.PatientSex = case.sex
    ds.PatientAge = f"{case.age_years:03d}Y"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "093000"
    ds.AccessionNumber = deterministic_uid(*key, "accession")[-12:]
    ds.StudyID = "1"
    ds.StudyDescription = "XR CHEST 1 VIEW"
    ds.ReferringPhysicianName = ""
    ds.Modality = "DX"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SeriesDescription = "CHEST PA"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.Manufacturer = "radpilot synth"
    ds.ManufacturerModelName = "pneumoniamnist-upsampled"
    ds.InstitutionName = "radpilot demo"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PositionReferenceIndicator = ""
    ds.ImageLaterality = "U"
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator = "43799004", "SCT"
    region.CodeMeaning = "Chest"
    ds.AnatomicRegionSequence = [region]
    ds.PixelIntensityRelationship = "LIN"
    ds.PixelIntensityRelationshipSign = 1
    ds.PresentationLUTShape = "IDENTITY"
    ds.DetectorType = ""
    ds.PositionerType = ""
    ds.AcquisitionContextSequence = []
    ds.ImageComments = f"synthetic study from {case.source} (label {case.label})"
    ds.BurnedInAnnotation = "NO"
    ds.KVP = 90
    ds.ImagerPixelSpacing = ds.PixelSpacing = [0.35, 0.35]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.LossyImageCompression = "00"
    pixels = _upsample(case.image, size)
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    ds.file_meta = meta
    return ds


def pneumoniamnist_cases(
    npz: Path, split: str = "test", *, count: int | None = None, start: int = 0
) -> Iterator[SynthCase]:
    """Cases from PneumoniaMNIST's ``split`` (train, val or test), in file order.

    Patients are invented deterministically (one per image): children aged 1-10, sex
    alternating by a hash of the index, since the source images come without them.

    Raises
    ------
    FileNotFoundError
        If ``npz`` is missing.
    KeyError
        If ``split`` is not in the archive.
    """
    with np.load(npz) as archive:
        images = archive[f"{split}_images"]
        labels = archive[f"{split}_labels"].reshape(-1)
    stop = len(images) if count is None else min(len(images), start + count)
    for index in range(start, stop):
        h = int(hashlib.sha256(f"{split}/{index}".encode()).hexdigest()[:8], 16)
        yield SynthCase(
            image=np.asarray(images[index], dtype=np.uint8),
            label=int(labels[index]),
            source=f"pneumoniamnist/{split}/{index}",
            patient_id=f"PNM{split[:2].upper()}{index:05d}",
            age_years=1 + h % 10,
            sex="F" if h % 2 else "M",
        )
