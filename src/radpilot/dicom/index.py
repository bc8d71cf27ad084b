"""Writing instance metadata into the relational index (patients, studies, series, instances)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from radpilot.dicom.reading import InstanceMeta
from radpilot.store.models import Base, Instance, Patient, Series, Study, utcnow

__all__ = [
    "IndexCache",
    "StoredFile",
    "fit",
    "index_instance",
    "index_instances",
]


def fit(model: type[Base], values: dict[str, Any]) -> dict[str, Any]:
    """Cut text values to their column's length.

    DICOM lets a few VRs exceed our columns (and malformed files exceed any limit);
    PostgreSQL would refuse the whole batch for one over-long value, SQLite would not
    notice. The index keeps the first characters; the archive keeps the original.
    """
    columns = model.__table__.columns
    fitted = dict(values)
    for name, value in values.items():
        length = getattr(columns[name].type, "length", None) if name in columns else None
        if length and isinstance(value, str) and len(value) > length:
            fitted[name] = value[:length]
    return fitted


@dataclass(frozen=True, slots=True)
class StoredFile:
    """Where an accepted instance lies and how it arrived."""

    relative_path: str
    sha256: str
    size: int
    source: str  # "dicom" or "import"
    calling_ae_title: str | None = None
    deidentified: bool = False


@dataclass
class IndexCache:
    """Primary keys already looked up inside one transaction (a batch of instances)."""

    patients: dict[tuple[str, str], Patient] = field(default_factory=dict)
    studies: dict[str, Study] = field(default_factory=dict)
    series: dict[str, Series] = field(default_factory=dict)


def _patient(session: Session, meta: InstanceMeta, cache: IndexCache) -> Patient:
    v = meta.values
    key = ((v.get("PatientID") or "")[:64], (v.get("IssuerOfPatientID") or "")[:64])
    if key in cache.patients:
        return cache.patients[key]
    patient = session.scalars(
        select(Patient).where(Patient.patient_id == key[0], Patient.issuer_of_patient_id == key[1])
    ).one_or_none()
    if patient is None:
        patient = Patient(
            **fit(
                Patient,
                {
                    "patient_id": key[0],
                    "issuer_of_patient_id": key[1],
                    "patient_name": v.get("PatientName"),
                    "birth_date": v.get("PatientBirthDate"),
                    "sex": v.get("PatientSex"),
                },
            )
        )
        session.add(patient)
    cache.patients[key] = patient
    return patient


def _study(session: Session, meta: InstanceMeta, cache: IndexCache) -> Study:
    uid = meta.study_instance_uid
    study = (
        cache.studies.get(uid)
        or session.scalars(select(Study).where(Study.study_instance_uid == uid)).one_or_none()
    )
    v = meta.values
    now = utcnow()
    if study is None:
        study = Study(
            patient=_patient(session, meta, cache),
            **fit(
                Study,
                {
                    "study_instance_uid": uid,
                    "accession_number": v.get("AccessionNumber"),
                    "study_date": v.get("StudyDate"),
                    "study_time": v.get("StudyTime"),
                    "study_description": v.get("StudyDescription"),
                    "institution_name": v.get("InstitutionName"),
                    "patient_age": v.get("PatientAge"),
                    "patient_age_years": v.get("PatientAgeYears"),
                    "first_received_at": now,
                    "last_received_at": now,
                },
            ),
        )
        session.add(study)
    else:
        study.last_received_at = now
        # fill attributes the first instance lacked, never overwrite what is known
        for attr, keyword in (
            ("accession_number", "AccessionNumber"),
            ("study_description", "StudyDescription"),
            ("institution_name", "InstitutionName"),
            ("patient_age", "PatientAge"),
            ("patient_age_years", "PatientAgeYears"),
        ):
            if getattr(study, attr) is None and v.get(keyword) is not None:
                setattr(study, attr, fit(Study, {attr: v.get(keyword)})[attr])
    cache.studies[uid] = study
    return study


def _series(session: Session, meta: InstanceMeta, cache: IndexCache) -> Series:
    uid = meta.series_instance_uid
    series = (
        cache.series.get(uid)
        or session.scalars(select(Series).where(Series.series_instance_uid == uid)).one_or_none()
    )
    if series is None:
        v = meta.values
        series = Series(
            study=_study(session, meta, cache),
            **fit(
                Series,
                {
                    "series_instance_uid": uid,
                    "series_number": v.get("SeriesNumber"),
                    "modality": v.get("Modality"),
                    "body_part_examined": v.get("BodyPartExamined"),
                    "view_position": v.get("ViewPosition"),
                    "series_description": v.get("SeriesDescription"),
                    "protocol_name": v.get("ProtocolName"),
                    "manufacturer": v.get("Manufacturer"),
                    "manufacturer_model_name": v.get("ManufacturerModelName"),
                    "software_versions": v.get("SoftwareVersions"),
                    "station_name": v.get("StationName"),
                    "institution_name": v.get("InstitutionName"),
                    "convolution_kernel": v.get("ConvolutionKernel"),
                },
            ),
        )
        session.add(series)
    else:
        _study(session, meta, cache)  # refresh the study's last_received_at
    cache.series[uid] = series
    return series


def _instance_row(meta: InstanceMeta, stored: StoredFile, series_pk: int) -> dict[str, Any]:
    v = meta.values
    spacing = v.get("PixelSpacing") or v.get("ImagerPixelSpacing")
    return {
        "sop_instance_uid": meta.sop_instance_uid,
        "sop_class_uid": meta.sop_class_uid,
        "series_pk": series_pk,
        "instance_number": v.get("InstanceNumber"),
        "transfer_syntax_uid": meta.transfer_syntax_uid,
        "rows": v.get("Rows"),
        "columns": v.get("Columns"),
        "number_of_frames": v.get("NumberOfFrames"),
        "bits_allocated": v.get("BitsAllocated"),
        "bits_stored": v.get("BitsStored"),
        "photometric_interpretation": v.get("PhotometricInterpretation"),
        "pixel_spacing": spacing,
        "slice_thickness": v.get("SliceThickness"),
        "kvp": v.get("KVP"),
        "burned_in_annotation": v.get("BurnedInAnnotation"),
        "file_path": stored.relative_path,
        "file_size": stored.size,
        "sha256": stored.sha256,
        "received_at": utcnow(),
        "source": stored.source,
        "calling_ae_title": stored.calling_ae_title,
        "deidentified": stored.deidentified,
    }


def index_instances(session: Session, items: list[tuple[InstanceMeta, StoredFile]]) -> int:
    """Add a batch of instances (and new series, studies, patients) to the index.

    Instances already indexed are left as they are, so re-indexing after a crash is
    harmless. Instances go in with one multi-row INSERT; a batch usually touches only a
    few series and studies, which are looked up once each.

    Returns
    -------
    int
        How many instances were added.
    """
    if not items:
        return 0
    uids = [meta.sop_instance_uid for meta, _ in items]
    known = set(
        session.scalars(
            select(Instance.sop_instance_uid).where(Instance.sop_instance_uid.in_(uids))
        )
    )
    cache = IndexCache()
    rows: list[dict[str, Any]] = []
    for meta, stored in items:
        if meta.sop_instance_uid in known:
            continue
        known.add(meta.sop_instance_uid)
        series = _series(session, meta, cache)
        if series.id is None:
            session.flush()
        rows.append(fit(Instance, _instance_row(meta, stored, series.id)))
    if rows:
        session.execute(insert(Instance), rows)
    return len(rows)


def index_instance(session: Session, meta: InstanceMeta, stored: StoredFile) -> Instance:
    """Add one instance to the index (see :func:`index_instances`) and return its row."""
    index_instances(session, [(meta, stored)])
    return session.scalars(
        select(Instance).where(Instance.sop_instance_uid == meta.sop_instance_uid)
    ).one()
