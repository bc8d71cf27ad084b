"""What the archive holds: counts, distributions and problems, computed in the database.

Every figure comes from a ``GROUP BY`` query, so the work stays in the database and the
rows that reach Python are bounded by the number of *distinct* values (modalities, ages,
study dates), not by the number of instances. The result is a plain, JSON-ready ``dict``
whose layout is versioned by :data:`SCHEMA` and documented in ``docs/inventory.md``.

No patient name, patient ID, accession number or UID ever enters the result: patients
appear only as counts, ages and sexes, and problem examples name rows by database id and
by :func:`radpilot.core.logging.ref` digests.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pydicom.uid import UID
from sqlalchemy import ColumnElement, distinct, func, select
from sqlalchemy.orm import Session

from radpilot.data.inventory_problems import COMMON_TRANSFER_SYNTAXES, find_problems, valid_date
from radpilot.store.models import (
    CaseAttribute,
    Instance,
    Patient,
    Read,
    Receipt,
    ReceiptOutcome,
    Series,
    Study,
)

__all__ = ["AGE_BANDS", "SCHEMA", "age_band", "build_inventory", "normalise_sex"]

SCHEMA = "radpilot.inventory/1"

#: (label, lower bound inclusive, upper bound exclusive, paediatric) in years.
AGE_BANDS: tuple[tuple[str, float, float | None, bool], ...] = (
    ("0-<1", 0.0, 1.0, True),
    ("1-<5", 1.0, 5.0, True),
    ("5-<12", 5.0, 12.0, True),
    ("12-<18", 12.0, 18.0, True),
    ("18-<40", 18.0, 40.0, False),
    ("40-<65", 40.0, 65.0, False),
    ("65-<80", 65.0, 80.0, False),
    ("80+", 80.0, None, False),
)
SEXES = ("F", "M", "O", "unknown")


def age_band(years: float | None) -> str:
    """The :data:`AGE_BANDS` label for an age in years, or ``"unknown"``."""
    if years is None or years < 0:
        return "unknown"
    for label, _low, high, _paediatric in AGE_BANDS:
        if high is None or years < high:
            return label
    return "unknown"  # pragma: no cover - the last band is open-ended


def normalise_sex(value: str | None) -> str:
    """``F``, ``M`` or ``O`` (DICOM Patient's Sex), anything else ``"unknown"``."""
    text = (value or "").strip().upper()
    return text if text in ("F", "M", "O") else "unknown"


def build_inventory(
    session: Session, *, now: dt.datetime | None = None, examples: int = 5
) -> dict[str, Any]:
    """Compute the inventory of everything indexed in the database.

    Parameters
    ----------
    session
        A session on a migrated radpilot database (SQLite or PostgreSQL).
    now
        The time stamped as ``generated_at`` (default: now, UTC).
    examples
        How many example rows each problem names.

    Returns
    -------
    dict
        The inventory, laid out as :data:`SCHEMA` (see ``docs/inventory.md``).

    Raises
    ------
    sqlalchemy.exc.SQLAlchemyError
        If the database cannot be queried.
    """
    generated = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    bind = session.get_bind()
    inventory: dict[str, Any] = {
        "schema": SCHEMA,
        "generated_at": generated.isoformat(timespec="seconds"),
        "database": bind.dialect.name,
        "totals": _totals(session),
        "modalities": _series_counts(session, modality=Series.modality),
        "manufacturers": _series_counts(session, manufacturer=Series.manufacturer),
        "models": _series_counts(
            session, manufacturer=Series.manufacturer, model=Series.manufacturer_model_name
        ),
        "groups": _series_counts(
            session,
            modality=Series.modality,
            manufacturer=Series.manufacturer,
            model=Series.manufacturer_model_name,
            protocol=func.coalesce(Series.protocol_name, Series.series_description),
        ),
        "series_attributes": {
            name: _series_counts(session, value=column)
            for name, column in (
                ("body_part", Series.body_part_examined),
                ("software_versions", Series.software_versions),
                ("station", Series.station_name),
                ("convolution_kernel", Series.convolution_kernel),
            )
        },
        "institutions": _counted(
            session, "studies", func.count(Study.id), institution=Study.institution_name
        ),
        "image_attributes": _image_attributes(session),
        "transfer_syntaxes": _transfer_syntaxes(session),
        "date_range": _date_range(session),
        "age": _age(session),
        "sex": _sex(session),
        "labels": _labels(session),
        "deidentified": _deidentified(session),
        "receipts": _receipts(session),
    }
    inventory["problems"] = find_problems(session, examples=examples)
    return inventory


def _int(value: Any) -> int:
    return int(value or 0)  # PostgreSQL returns Decimal for SUM over BIGINT


def _sorted(rows: Iterable[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    def order(row: dict[str, Any]) -> tuple[int, str]:
        names = "\x00".join("" if v is None else str(v) for k, v in row.items() if k != key)
        return (-int(row[key]), names)

    return sorted(rows, key=order)


def _totals(session: Session) -> dict[str, int]:
    instances = session.execute(
        select(
            func.count(Instance.id),
            func.sum(Instance.file_size),
            func.sum(func.coalesce(Instance.number_of_frames, 1)),
        )
    ).one()
    return {
        "patients": _int(session.scalar(select(func.count(Patient.id)))),
        "studies": _int(session.scalar(select(func.count(Study.id)))),
        "series": _int(session.scalar(select(func.count(Series.id)))),
        "instances": _int(instances[0]),
        "frames": _int(instances[2]),
        "bytes": _int(instances[1]),
    }


def _series_counts(session: Session, **dims: ColumnElement[Any]) -> list[dict[str, Any]]:
    """Studies, series, instances and bytes per combination of series-level ``dims``."""
    per_series = (
        select(
            Instance.series_pk.label("series_pk"),
            func.count(Instance.id).label("n"),
            func.sum(Instance.file_size).label("size"),
        )
        .group_by(Instance.series_pk)
        .subquery()
    )
    columns = list(dims.values())
    stmt = (
        select(
            *columns,
            func.count(distinct(Series.study_pk)),
            func.count(Series.id),
            func.sum(per_series.c.n),
            func.sum(per_series.c.size),
        )
        .select_from(Series)
        .outerjoin(per_series, per_series.c.series_pk == Series.id)
        .group_by(*columns)
    )
    rows = []
    for row in session.execute(stmt):
        entry: dict[str, Any] = dict(zip(dims, row[: len(dims)], strict=True))
        studies, series, instances, size = row[len(dims) :]
        entry.update(studies=_int(studies), series=_int(series), instances=_int(instances),
                     bytes=_int(size))
        rows.append(entry)
    return _sorted(rows, "instances")


def _counted(
    session: Session, name: str, count: ColumnElement[Any], **dims: ColumnElement[Any]
) -> list[dict[str, Any]]:
    """``count`` (named ``name``) per combination of ``dims``, all from one table."""
    columns = list(dims.values())
    rows = [
        {**dict(zip(dims, row[:-1], strict=True)), name: _int(row[-1])}
        for row in session.execute(select(*columns, count).group_by(*columns))
    ]
    return _sorted(rows, name)


def _image_attributes(session: Session) -> dict[str, list[dict[str, Any]]]:
    n = func.count(Instance.id)
    sop_classes = _counted(session, "instances", n, uid=Instance.sop_class_uid)
    for row in sop_classes:
        row["name"] = UID(row["uid"]).name
    return {
        "sop_classes": sop_classes,
        "rows_columns": _counted(
            session, "instances", n, rows=Instance.rows, columns=Instance.columns
        ),
        "pixel_spacing": _counted(session, "instances", n, value=Instance.pixel_spacing),
        "slice_thickness": _counted(session, "instances", n, value=Instance.slice_thickness),
        "kvp": _counted(session, "instances", n, value=Instance.kvp),
        "photometric_interpretation": _counted(
            session, "instances", n, value=Instance.photometric_interpretation
        ),
    }


def _transfer_syntaxes(session: Session) -> list[dict[str, Any]]:
    rows = _counted(session, "instances", func.count(Instance.id),
                    uid=Instance.transfer_syntax_uid)
    for row in rows:
        row["name"] = UID(row["uid"]).name
        row["common"] = row["uid"] in COMMON_TRANSFER_SYNTAXES
    return rows


def _date_range(session: Session) -> dict[str, Any]:
    by_date = session.execute(select(Study.study_date, func.count(Study.id))
                              .group_by(Study.study_date)).all()
    years: Counter[str] = Counter()
    months: Counter[str] = Counter()
    dates: list[dt.date] = []
    missing = invalid = 0
    for text, count in by_date:
        date = valid_date(text)
        if text is None:
            missing += count
        elif date is None:
            invalid += count
        else:
            dates.append(date)
            years[f"{date.year:04d}"] += count
            months[f"{date.year:04d}-{date.month:02d}"] += count
    return {
        "first": min(dates).isoformat() if dates else None,
        "last": max(dates).isoformat() if dates else None,
        "studies_with_date": sum(years.values()),
        "studies_without_date": missing,
        "studies_with_invalid_date": invalid,
        "by_year": [{"year": y, "studies": c} for y, c in sorted(years.items())],
        "by_month": [{"month": m, "studies": c} for m, c in sorted(months.items())],
    }


def _age(session: Session) -> dict[str, Any]:
    """Age at the study, per study, in :data:`AGE_BANDS` and split by the patient's sex."""
    stmt = (
        select(Study.patient_age_years, Patient.sex, func.count(Study.id))
        .join(Patient, Study.patient_pk == Patient.id)
        .group_by(Study.patient_age_years, Patient.sex)
    )
    bands: dict[str, Counter[str]] = {label: Counter() for label, *_ in AGE_BANDS}
    bands["unknown"] = Counter()
    known = 0
    total_years = 0.0
    lowest: float | None = None
    highest: float | None = None
    for years, sex, count in session.execute(stmt):
        bands[age_band(years)][normalise_sex(sex)] += count
        if years is not None and years >= 0:
            known += count
            total_years += years * count
            lowest = years if lowest is None else min(lowest, years)
            highest = years if highest is None else max(highest, years)
    return {
        "bands": [
            {"band": label, "min_years": low, "max_years": high, "paediatric": paediatric,
             "studies": sum(bands[label].values()),
             "by_sex": {sex: bands[label][sex] for sex in SEXES}}
            for label, low, high, paediatric in AGE_BANDS
        ],
        "studies_with_age": known,
        "studies_without_age": sum(bands["unknown"].values()),
        "unknown_age_by_sex": {sex: bands["unknown"][sex] for sex in SEXES},
        "paediatric_studies": sum(sum(bands[label].values())
                                  for label, _l, _h, paediatric in AGE_BANDS if paediatric),
        "mean_years": round(total_years / known, 2) if known else None,
        "min_years": lowest,
        "max_years": highest,
    }


def _sex(session: Session) -> dict[str, dict[str, int]]:
    patients: Counter[str] = Counter({sex: 0 for sex in SEXES})
    for sex, count in session.execute(select(Patient.sex, func.count(Patient.id))
                                      .group_by(Patient.sex)):
        patients[normalise_sex(sex)] += count
    studies: Counter[str] = Counter({sex: 0 for sex in SEXES})
    for sex, count in session.execute(
        select(Patient.sex, func.count(Study.id))
        .join(Patient, Study.patient_pk == Patient.id)
        .group_by(Patient.sex)
    ):
        studies[normalise_sex(sex)] += count
    return {"patients": dict(patients), "studies": dict(studies)}


def _labels(session: Session) -> dict[str, Any]:
    labelled, reads, readers = session.execute(
        select(func.count(distinct(Read.study_pk)), func.count(Read.id),
               func.count(distinct(Read.reader)))
    ).one()
    studies = _int(session.scalar(select(func.count(Study.id))))
    positive = func.sum(func.coalesce(Read.value, 0))
    by_finding = [
        {"finding": finding, "studies": _int(n_studies), "reads": _int(n_reads),
         "positive_reads": _int(n_pos), "negative_reads": _int(n_reads) - _int(n_pos),
         "readers": _int(n_readers)}
        for finding, n_studies, n_reads, n_pos, n_readers in session.execute(
            select(Read.finding, func.count(distinct(Read.study_pk)), func.count(Read.id),
                   positive, func.count(distinct(Read.reader)))
            .group_by(Read.finding)
        )
    ]
    return {
        "studies_with_labels": _int(labelled),
        "studies_without": studies - _int(labelled),
        "reads": _int(reads),
        "readers": _int(readers),
        "by_finding": _sorted(by_finding, "studies"),
        "case_attributes": _counted(session, "studies", func.count(distinct(CaseAttribute.study_pk)),
                                    name=CaseAttribute.name),
    }


def _deidentified(session: Session) -> dict[str, int]:
    counts = dict(session.execute(select(Instance.deidentified, func.count(Instance.id))
                                  .group_by(Instance.deidentified)).tuples().all())
    return {"instances": _int(counts.get(True)), "not_deidentified": _int(counts.get(False))}


def _receipts(session: Session) -> dict[str, int]:
    counts = dict(session.execute(select(Receipt.outcome, func.count(Receipt.id))
                                  .group_by(Receipt.outcome)).tuples().all())
    return {outcome.value: _int(counts.get(outcome)) for outcome in ReceiptOutcome}
