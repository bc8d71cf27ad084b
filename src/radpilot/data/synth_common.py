"""What radiograph and CT synthesis share: keys, UIDs, random streams, common modules.

Every synthetic study is named by a key: the seed, the source (``pneumoniamnist/test/17``,
``phantom/ct/3``) and, when it differs from the defaults, a variant string naming the
modality, header variety, drift and perturbations. UIDs and random draws derive from the
key, so the same options give the same bytes, and a perturbed copy of a study is another
study (other UIDs) of the same patient.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from radpilot.data.synth_ct import LesionTruth
from radpilot.data.synth_headers import Drift, StudyHeader
from radpilot.data.synth_perturb import Applied, PerturbationSpec
from radpilot.dicom.writing import IMPLEMENTATION_CLASS_UID

__all__ = [
    "SynthKind",
    "SynthStudy",
    "Variation",
    "derivation",
    "deterministic_uid",
    "random_stream",
    "study_key",
    "write_common",
    "write_file_meta",
]


class SynthKind(StrEnum):
    """What ``radpilot synth`` makes."""

    RADIOGRAPH = "radiograph"  # real PneumoniaMNIST pixels as CR or DX
    CT = "ct"  # CT phantom series with lesions and masks


def deterministic_uid(*parts: object) -> str:
    """A UID under 2.25 derived from ``parts`` (same parts, same UID)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def random_stream(*parts: object) -> np.random.Generator:
    """A random generator seeded from ``parts`` (same parts, same draws)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


@dataclass(frozen=True)
class Variation:
    """How a study departs from the plain default: headers, drift, perturbations."""

    vary_headers: bool = False
    drift: Drift | None = None
    perturbations: tuple[PerturbationSpec, ...] = ()

    def variant(self, modality: str, default_modality: str) -> str:
        """The part of the study key naming these choices ("" for the defaults)."""
        parts = [] if modality == default_modality else [modality]
        if self.vary_headers:
            parts.append("varied")
        if self.drift is not None:
            parts.append(f"drift={self.drift.value}")
        parts += [f"{p.name.value}={p.value or ''}" for p in self.perturbations]
        return ";".join(parts)


def study_key(seed: str, source: str, variant: str) -> tuple[str, ...]:
    """The key UIDs derive from; without a variant, the key earlier versions used."""
    return (seed, source, variant) if variant else (seed, source)


@dataclass
class SynthStudy:
    """One synthetic study: its images and everything known about them.

    Attributes
    ----------
    label
        Radiographs: the source's label (pneumonia); CT: 1 when there are lesions.
    datasets
        The instances, in order (one radiograph, or CT slices from foot to head).
    applied
        The perturbations as applied, with their parameters.
    lesions
        CT: one record per lesion, analytic and mask-measured size.
    masks
        CT: one boolean (slices, rows, columns) array per lesion, on the written grid.
    """

    source: str
    kind: SynthKind
    label: int
    header: StudyHeader
    datasets: list[Dataset]
    applied: list[Applied] = field(default_factory=list)
    lesions: list[LesionTruth] = field(default_factory=list)
    masks: list[npt.NDArray[np.bool_]] = field(default_factory=list)

    @property
    def study_instance_uid(self) -> str:
        """The study's UID."""
        return str(self.datasets[0].StudyInstanceUID)


def write_file_meta(ds: Dataset) -> None:
    """Give ``ds`` File Meta Information for explicit VR little endian."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    ds.file_meta = meta


def write_common(ds: Dataset, header: StudyHeader, key: Sequence[str], modality: str) -> None:
    """Patient, study, series and equipment attributes every synthetic image carries."""
    patient, protocol, device = header.patient, header.protocol, header.device
    ds.StudyInstanceUID = deterministic_uid(*key, "study")
    ds.SeriesInstanceUID = deterministic_uid(*key, "series")
    ds.PatientName = f"SYNTH^{patient.patient_id}"
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d")
    ds.PatientSex = patient.sex
    ds.PatientAge = patient.age
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = header.study_date.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = header.study_time
    ds.AccessionNumber = deterministic_uid(*key, "accession")[-12:]
    ds.StudyID = "1"
    ds.StudyDescription = protocol.study_description
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.SeriesDescription = protocol.series_description
    ds.BodyPartExamined = protocol.body_part
    if protocol.name:
        ds.ProtocolName = protocol.name
    ds.Manufacturer = device.manufacturer
    ds.ManufacturerModelName = device.model
    if device.software:
        ds.SoftwareVersions = device.software
    if header.station_name:
        ds.StationName = header.station_name
    ds.InstitutionName = header.institution


def derivation(applied: Sequence[Applied], prefix: str) -> str:
    """DerivationDescription (ST, at most 1024 characters) naming what was done."""
    text = "; ".join([prefix, *(a.describe() for a in applied)])
    return text if len(text) <= 1024 else text[:1021] + "..."
