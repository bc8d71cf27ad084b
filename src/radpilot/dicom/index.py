"""Writing instance metadata into the relational index (patients, studies, series, instances)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from radpilot.dicom.reading import InstanceMeta
from radpilot.store.models import Base, Instance, Patient, Series, Study, as_utc, utcnow

__all__ = [
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
    received_at: dt.datetime | None = None  # when it arrived; None: when it is indexed


def _patient_key(meta: InstanceMeta) -> tuple[str, str]:
    v = meta.values
    return ((v.get("PatientID") or "")[:64], (v.get("IssuerOfPatientID") or "")[:64])


def _patient_row(meta: InstanceMeta) -> dict[str, Any]:
    v = meta.values
    key = _patient_key(meta)
    return fit(
        Patient,
        {
            "patient_id": key[0],
            "issuer_of_patient_id": key[1],
            "patient_name": v.get("PatientName"),
            "birth_date": v.get("PatientBirthDate"),
            "sex": v.get("PatientSex"),
        },
    )


# Index columns and the DICOM keywords they are read from.
_STUDY_COLUMNS = (
    ("accession_number", "AccessionNumber"),
    ("study_date", "StudyDate"),
    ("study_time", "StudyTime"),
    ("study_description", "StudyDescription"),
    ("institution_name", "InstitutionName"),
    ("patient_age", "PatientAge"),
    ("patient_age_years", "PatientAgeYears"),
)
_SERIES_COLUMNS = (
    ("series_number", "SeriesNumber"),
    ("modality", "Modality"),
    ("body_part_examined", "BodyPartExamined"),
    ("view_position", "ViewPosition"),
    ("series_description", "SeriesDescription"),
    ("protocol_name", "ProtocolName"),
    ("manufacturer", "Manufacturer"),
    ("manufacturer_model_name", "ManufacturerModelName"),
    ("software_versions", "SoftwareVersions"),
    ("station_name", "StationName"),
    ("institution_name", "InstitutionName"),
    ("convolution_kernel", "ConvolutionKernel"),
)


def _study_row(meta: InstanceMeta, first: dt.datetime, last: dt.datetime) -> dict[str, Any]:
    row = {column: meta.values.get(keyword) for column, keyword in _STUDY_COLUMNS}
    row.update(
        study_instance_uid=meta.study_instance_uid,
        first_received_at=first,
        last_received_at=last,
    )
    return fit(Study, row)


def _series_row(meta: InstanceMeta) -> dict[str, Any]:
    row = {column: meta.values.get(keyword) for column, keyword in _SERIES_COLUMNS}
    row["series_instance_uid"] = meta.series_instance_uid
    return fit(Series, row)


# Study attributes a later instance may supply when the first lacked them (all but the
# study's date and time); what is known is never overwritten.
_STUDY_FILL = tuple(pair for pair in _STUDY_COLUMNS if pair[0] not in ("study_date", "study_time"))


def _fill(study: dict[str, Any], meta: InstanceMeta) -> dict[str, Any]:
    """The study attributes ``meta`` knows and ``study`` (a row or its values) lacks."""
    v = meta.values
    return fit(
        Study,
        {
            attr: v[keyword]
            for attr, keyword in _STUDY_FILL
            if study.get(attr) is None and v.get(keyword) is not None
        },
    )


_IN_CHUNK = 500  # values per IN (...): well inside every database's parameter limit


def _chunks(values: Iterable[str]) -> list[list[str]]:
    ordered = sorted(set(values))
    return [ordered[i : i + _IN_CHUNK] for i in range(0, len(ordered), _IN_CHUNK)]


_StudyPlan = dict[str, tuple[tuple[str, str], dict[str, Any]]]  # uid -> patient key, row
_SeriesPlan = dict[str, tuple[str, dict[str, Any]]]  # uid -> study uid, row


class _Batch:
    """Keys of the series, studies and patients a batch touches, existing or new.

    Existing rows are looked up with one query per table, new rows inserted with one
    multi-row INSERT ... RETURNING per table (matched back by their natural keys, so
    the order in which the database returns them does not matter).
    """

    def __init__(self, session: Session, metas: list[InstanceMeta]) -> None:
        self.session = session
        self.series: dict[str, int] = {}
        self.studies: dict[str, dict[str, Any]] = {}  # uid -> id and the fill-in columns
        self.patients: dict[tuple[str, str], int] = {}
        for chunk in _chunks(m.series_instance_uid for m in metas):
            by_uid = select(Series.series_instance_uid, Series.id)
            for uid, pk in session.execute(by_uid.where(Series.series_instance_uid.in_(chunk))):
                self.series[uid] = pk
        columns = [
            Study.study_instance_uid,
            Study.id,
            Study.last_received_at,
            *(getattr(Study, a) for a, _ in _STUDY_FILL),
        ]
        for chunk in _chunks(m.study_instance_uid for m in metas):
            query = select(*columns).where(Study.study_instance_uid.in_(chunk))
            for row in session.execute(query).mappings():
                self.studies[row["study_instance_uid"]] = dict(row)
        self.existing_studies = set(self.studies)
        keys = {_patient_key(m) for m in metas}
        for chunk in _chunks(key[0] for key in keys):
            by_id = select(Patient.patient_id, Patient.issuer_of_patient_id, Patient.id)
            for pid, issuer, pk in session.execute(by_id.where(Patient.patient_id.in_(chunk))):
                if (pid, issuer or "") in keys:
                    self.patients[(pid, issuer or "")] = pk

    def place(self, items: list[tuple[InstanceMeta, dt.datetime]]) -> dict[str, int]:
        """Insert what is new and update the studies that got instances.

        ``items``: each instance's metadata and arrival time. A study's
        ``last_received_at`` is its latest instance's arrival (never moved back, e.g. by
        an instance recovered after a restart), ``first_received_at`` its first's.

        Returns
        -------
        dict[str, int]
            The primary key of every series of the batch, by Series Instance UID.
        """
        new_patients: dict[tuple[str, str], dict[str, Any]] = {}
        new_studies: _StudyPlan = {}
        new_series: _SeriesPlan = {}
        touched: dict[str, dict[str, Any]] = {}  # existing study uid -> columns to set
        for meta, arrived in items:
            uid = meta.study_instance_uid
            if uid in self.existing_studies:
                changes = touched.setdefault(uid, {})
                latest = changes.get("last_received_at") or self.studies[uid]["last_received_at"]
                if latest is None or as_utc(arrived) > as_utc(latest):
                    changes["last_received_at"] = arrived
                changes.update(_fill({**self.studies[uid], **changes}, meta))
            elif uid in new_studies:
                row = new_studies[uid][1]
                row["first_received_at"] = min(row["first_received_at"], arrived)
                row["last_received_at"] = max(row["last_received_at"], arrived)
                row.update(_fill(row, meta))
            else:
                key = _patient_key(meta)
                if key not in self.patients and key not in new_patients:
                    new_patients[key] = _patient_row(meta)
                new_studies[uid] = (key, _study_row(meta, arrived, arrived))
            if meta.series_instance_uid not in self.series:
                new_series.setdefault(meta.series_instance_uid, (uid, _series_row(meta)))
        self._insert_patients(list(new_patients.values()))
        self._insert_studies(new_studies)
        self._insert_series(new_series)
        # In key order, so that two processes updating the same studies do not deadlock.
        for uid, changes in sorted(touched.items(), key=lambda item: self.studies[item[0]]["id"]):
            if changes:
                study_pk = self.studies[uid]["id"]
                self.session.execute(update(Study).where(Study.id == study_pk).values(**changes))
        return self.series

    def _insert_patients(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        returning = (Patient.patient_id, Patient.issuer_of_patient_id, Patient.id)
        for pid, issuer, pk in self.session.execute(insert(Patient).returning(*returning), rows):
            self.patients[(pid, issuer or "")] = pk

    def _insert_studies(self, new: _StudyPlan) -> None:
        if not new:
            return
        rows = [{**row, "patient_pk": self.patients[key]} for key, row in new.values()]
        returning = (Study.study_instance_uid, Study.id)
        for uid, pk in self.session.execute(insert(Study).returning(*returning), rows):
            self.studies[uid] = {"id": pk}

    def _insert_series(self, new: _SeriesPlan) -> None:
        if not new:
            return
        rows = [{**row, "study_pk": self.studies[study]["id"]} for study, row in new.values()]
        returning = (Series.series_instance_uid, Series.id)
        for uid, pk in self.session.execute(insert(Series).returning(*returning), rows):
            self.series[uid] = pk


def _instance_row(
    meta: InstanceMeta, stored: StoredFile, series_pk: int, received_at: dt.datetime
) -> dict[str, Any]:
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
        "received_at": received_at,
        "source": stored.source,
        "calling_ae_title": stored.calling_ae_title,
        "deidentified": stored.deidentified,
    }


def index_instances(session: Session, items: list[tuple[InstanceMeta, StoredFile]]) -> int:
    """Add a batch of instances (and new series, studies, patients) to the index.

    Instances already indexed are left as they are, so re-indexing after a crash is
    harmless. The batch's existing series, studies and patients are looked up in one
    query each, and new ones and the instances go in with one multi-row INSERT per
    table: a batch of radiographs, each its own patient and study, costs a
    handful of statements rather than several per instance.

    Returns
    -------
    int
        How many instances were added.
    """
    if not items:
        return 0
    uids = [meta.sop_instance_uid for meta, _ in items]
    known: set[str] = set()
    for chunk in _chunks(uids):
        known.update(
            session.scalars(
                select(Instance.sop_instance_uid).where(Instance.sop_instance_uid.in_(chunk))
            )
        )
    fresh: list[tuple[InstanceMeta, StoredFile]] = []
    for meta, stored in items:
        if meta.sop_instance_uid not in known:
            known.add(meta.sop_instance_uid)
            fresh.append((meta, stored))
    if not fresh:
        return 0
    now = utcnow()
    arrivals = [as_utc(stored.received_at or now) for _, stored in fresh]
    metas = [meta for meta, _ in fresh]
    series = _Batch(session, metas).place(list(zip(metas, arrivals, strict=True)))
    rows = [
        fit(Instance, _instance_row(meta, stored, series[meta.series_instance_uid], arrived))
        for (meta, stored), arrived in zip(fresh, arrivals, strict=True)
    ]
    session.execute(insert(Instance), rows)
    return len(rows)


def index_instance(session: Session, meta: InstanceMeta, stored: StoredFile) -> Instance:
    """Add one instance to the index (see :func:`index_instances`) and return its row."""
    index_instances(session, [(meta, stored)])
    return session.scalars(
        select(Instance).where(Instance.sop_instance_uid == meta.sop_instance_uid)
    ).one()
