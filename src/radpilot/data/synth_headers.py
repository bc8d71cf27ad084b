"""Realistic, varied headers for synthetic studies: who, where, on what, when.

A small table of sites, each with its own fleet of devices (vendor, model, software
version, station), chest and abdomen protocols by modality and age group, and patients
aged 0 to 95. Vendor and model strings are spelled as those vendors' devices write them;
the sites, stations and patients are invented. :class:`Drift` swaps in a device or a
protocol that the baseline tables never use, so that a monitor of header distributions
has something to find.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import numpy as np

from radpilot.data.synth_tables import (
    CT_ADULT,
    CT_CHILD,
    DEFAULT_DEVICES,
    DEFAULT_PROTOCOLS,
    DEVICES,
    NEW_DEVICES,
    NEW_PROTOCOLS,
    SITES,
    XRAY_ADULT,
    XRAY_CHILD,
    Device,
    Drift,
    Protocol,
    SynthModality,
)

__all__ = [
    "Device",
    "Drift",
    "Patient",
    "Protocol",
    "StudyHeader",
    "SynthModality",
    "default_header",
    "dicom_age",
    "draw_header",
    "draw_patient",
    "with_drift",
]


@dataclass(frozen=True)
class Patient:
    """Who the study pretends to belong to (invented, never a real person)."""

    patient_id: str
    sex: str
    birth_date: dt.date
    age: str  # DICOM AS at the study date, e.g. "045Y", "007M", "012D"

    @property
    def age_years(self) -> int:
        """Completed years (0 for an age given in months or days)."""
        return int(self.age[:3]) if self.age.endswith("Y") else 0


@dataclass(frozen=True)
class StudyHeader:
    """Every header value a synthetic study carries besides UIDs and pixels."""

    device: Device
    protocol: Protocol
    institution: str
    station_name: str  # "" writes no StationName
    patient: Patient
    study_date: dt.date
    study_time: str  # HHMMSS
    kvp: float
    exposure: float  # x-ray: mAs; CT: mA
    field_mm: float  # x-ray: collimated field side; CT: reconstruction field of view
    drift: Drift | None = None

    def manifest_fields(self) -> dict[str, str]:
        """The header values as manifest columns (strings, as written to DICOM)."""
        return {
            "manufacturer": self.device.manufacturer,
            "model": self.device.model,
            "software_versions": self.device.software,
            "station_name": self.station_name,
            "institution": self.institution,
            "protocol_name": self.protocol.name,
            "study_description": self.protocol.study_description,
            "series_description": self.protocol.series_description,
            "body_part": self.protocol.body_part,
            "view_position": self.protocol.view,
            "patient_id": self.patient.patient_id,
            "patient_sex": self.patient.sex,
            "patient_age": self.patient.age,
            "patient_birth_date": self.patient.birth_date.strftime("%Y%m%d"),
            "study_date": self.study_date.strftime("%Y%m%d"),
            "kvp": f"{self.kvp:g}",
            "drift": self.drift.value if self.drift else "",
        }


_FIRST_DAY, _DAYS = dt.date(2024, 1, 1), 731


def dicom_age(birth: dt.date, on: dt.date) -> str:
    """PatientAge (AS) on ``on``: completed years, else months, else days.

    Raises
    ------
    ValueError
        If ``birth`` is after ``on``.
    """
    if birth > on:
        raise ValueError(f"birth date {birth} is after the study date {on}")
    months = (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    if months >= 12:
        return f"{months // 12:03d}Y"
    if months >= 1:
        return f"{months:03d}M"
    return f"{(on - birth).days:03d}D"


def draw_patient(rng: np.random.Generator, patient_id: str, study_date: dt.date) -> Patient:
    """A patient aged 0-95: 8 % under 2 years, 17 % aged 2-17, 75 % adults."""
    u = rng.random()
    if u < 0.08:
        days = int(rng.integers(1, 730))
    elif u < 0.25:
        days = int(rng.integers(730, 18 * 365))
    else:
        days = int(rng.integers(18 * 366, 96 * 365))
    birth = study_date - dt.timedelta(days=days)
    sex = "F" if rng.random() < 0.5 else "M"
    return Patient(patient_id, sex, birth, dicom_age(birth, study_date))


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], digits: int) -> float:
    return round(float(rng.uniform(*bounds)), digits)


def draw_header(
    modality: SynthModality | str,
    rng: np.random.Generator,
    patient_id: str,
    *,
    drift: Drift | str | None = None,
) -> StudyHeader:
    """A header drawn from the site, device, protocol and patient tables.

    Children (under 16) go to the children's hospital in 60 % of cases and always get a
    paediatric protocol; adults never go there. Portable devices get the portable
    protocol; the collimated field of a radiograph shrinks with a child's age.

    Raises
    ------
    ValueError
        If ``modality`` or ``drift`` is not one of the defined terms.
    """
    modality = SynthModality(modality)
    study_date = _FIRST_DAY + dt.timedelta(days=int(rng.integers(0, _DAYS)))
    patient = draw_patient(rng, patient_id, study_date)
    child = patient.age_years < 16
    if child and rng.random() < 0.6:
        sites = [s for s in SITES if s.paediatric]
    else:  # adults never go to the children's hospital
        sites = [s for s in SITES if child or not s.paediatric]
    site = sites[int(rng.integers(len(sites)))]
    fleet = [(i, DEVICES[k]) for i, k in enumerate(site.devices) if DEVICES[k].modality is modality]
    number, device = fleet[int(rng.integers(len(fleet)))]
    if modality is SynthModality.CT:
        protocol = CT_CHILD if child else CT_ADULT[int(rng.integers(len(CT_ADULT)))]
    elif child:
        protocol = XRAY_CHILD
    else:
        protocol = XRAY_ADULT[1] if device.portable else XRAY_ADULT[0]
    hour = int(rng.integers(0, 24)) if device.portable else int(rng.integers(7, 20))
    study_time = f"{hour:02d}{int(rng.integers(60)):02d}{int(rng.integers(60)):02d}"
    kind = "CT" if modality is SynthModality.CT else "XR"
    field = device.field_mm
    if modality is not SynthModality.CT:
        field *= 0.55 + 0.45 * min(patient.age_years, 16) / 16
    header = StudyHeader(
        device=device,
        protocol=protocol,
        institution=site.institution,
        station_name=f"{site.code}-{kind}{number + 1}",
        patient=patient,
        study_date=study_date,
        study_time=study_time,
        kvp=_kvp(rng, protocol, modality),
        exposure=_uniform(rng, protocol.exposure, 1),
        field_mm=round(field, 1),
    )
    return with_drift(header, drift, rng)


def _kvp(rng: np.random.Generator, protocol: Protocol, modality: SynthModality) -> float:
    if modality is SynthModality.CT:  # CT tubes run at steps of 20 kV
        low, high = (int(v) // 20 for v in protocol.kvp)
        return float(20 * int(rng.integers(low, high + 1)))
    return float(round(rng.uniform(*protocol.kvp)))


def with_drift(
    header: StudyHeader, drift: Drift | str | None, rng: np.random.Generator
) -> StudyHeader:
    """``header`` moved to the drifted device or protocol (unchanged for ``None``).

    Raises
    ------
    ValueError
        If ``drift`` is not one of :class:`Drift`'s values.
    """
    if drift is None:
        return header
    drift = Drift(drift)
    modality = header.device.modality
    if drift is Drift.NEW_SCANNER:
        device = NEW_DEVICES[modality]
        kind = "CT" if modality is SynthModality.CT else "XR"
        station = f"{header.station_name.split('-')[0]}-{kind}NEW" if header.station_name else ""
        return replace(header, device=device, station_name=station, drift=drift)
    protocol = NEW_PROTOCOLS[modality]
    return replace(
        header,
        protocol=protocol,
        kvp=_kvp(rng, protocol, modality),
        exposure=_uniform(rng, protocol.exposure, 1),
        drift=drift,
    )


def default_header(
    modality: SynthModality | str,
    patient: Patient,
    study_date: dt.date,
    *,
    drift: Drift | str | None = None,
    rng: np.random.Generator | None = None,
) -> StudyHeader:
    """The fixed header (Manufacturer ``radpilot synth``) used without header variety.

    Raises
    ------
    ValueError
        If ``modality`` or ``drift`` is not one of the defined terms.
    """
    modality = SynthModality(modality)
    protocol = DEFAULT_PROTOCOLS[modality]
    header = StudyHeader(
        device=DEFAULT_DEVICES[modality],
        protocol=protocol,
        institution="radpilot demo",
        station_name="",
        patient=patient,
        study_date=study_date,
        study_time="093000",
        kvp=protocol.kvp[0],
        exposure=protocol.exposure[0],
        field_mm=DEFAULT_DEVICES[modality].field_mm,
    )
    return with_drift(header, drift, rng or np.random.default_rng(0))
