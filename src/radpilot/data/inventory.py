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
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from radpilot.data.inventory_counts import (
    as_int,
    by_count,
    counted,
    image_attributes,
    series_counts,
    totals,
    transfer_syntaxes,
)
from radpilot.data.inventory_problems import find_problems, valid_date
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
    if bind.dialect.name == "postgresql" and not session.in_transaction():
        # one snapshot for every query, so totals and groups agree while intake writes
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    inventory: dict[str, Any] = {
        "schema": SCHEMA,
        "generated_at": generated.isoformat(timespec="seconds"),
        "database": bind.dialect.name,
        "totals": totals(session),
        "modalities": series_counts(session, modality=Series.modality),
        "manufacturers": series_counts(session, manufacturer=Series.manufacturer),
        "models": series_counts(
            session, manufacturer=Series.manufacturer, model=Series.manufacturer_model_name
        ),
        "groups": series_counts(
            session,
            modality=Series.modality,
            manufacturer=Series.manufacturer,
            model=Series.manufacturer_model_name,
            protocol=func.coalesce(Series.protocol_name, Series.series_description),
        ),
        "series_attributes": {
            name: series_counts(session, value=column)
            for name, column in (
                ("body_part", Series.body_part_examined),
                ("software_versions", Series.software_versions),
                ("station", Series.station_name),
                ("convolution_kernel", Series.convolution_kernel),
            )
        },
        "institutions": counted(
            session, "studies", func.count(Study.id), institution=Study.institution_name
        ),
        "image_attributes": image_attributes(session),
        "transfer_syntaxes": transfer_syntaxes(session),
        "date_range": _date_range(session),
        "age": _age(session),
        "sex": _sex(session),
        "labels": _labels(session),
        "deidentified": _deidentified(session),
        "receipts": _receipts(session),
    }
    inventory["problems"] = find_problems(session, examples=examples)
    return inventory


def _date_range(session: Session) -> dict[str, Any]:
    by_date = session.execute(
        select(Study.study_date, func.count(Study.id)).group_by(Study.study_date)
    ).all()
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
            {
                "band": label,
                "min_years": low,
                "max_years": high,
                "paediatric": paediatric,
                "studies": sum(bands[label].values()),
                "by_sex": {sex: bands[label][sex] for sex in SEXES},
            }
            for label, low, high, paediatric in AGE_BANDS
        ],
        "studies_with_age": known,
        "studies_without_age": sum(bands["unknown"].values()),
        "unknown_age_by_sex": {sex: bands["unknown"][sex] for sex in SEXES},
        "paediatric_studies": sum(
            sum(bands[label].values()) for label, _l, _h, paediatric in AGE_BANDS if paediatric
        ),
        "mean_years": round(total_years / known, 2) if known else None,
        "min_years": lowest,
        "max_years": highest,
    }


def _sex(session: Session) -> dict[str, dict[str, int]]:
    patients: Counter[str] = Counter({sex: 0 for sex in SEXES})
    for sex, count in session.execute(
        select(Patient.sex, func.count(Patient.id)).group_by(Patient.sex)
    ):
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
        select(
            func.count(distinct(Read.study_pk)),
            func.count(Read.id),
            func.count(distinct(Read.reader)),
        )
    ).one()
    studies = as_int(session.scalar(select(func.count(Study.id))))
    positive = func.sum(func.coalesce(Read.value, 0))
    by_finding = [
        {
            "finding": finding,
            "studies": as_int(n_studies),
            "reads": as_int(n_reads),
            "positive_reads": as_int(n_pos),
            "negative_reads": as_int(n_reads) - as_int(n_pos),
            "readers": as_int(n_readers),
        }
        for finding, n_studies, n_reads, n_pos, n_readers in session.execute(
            select(
                Read.finding,
                func.count(distinct(Read.study_pk)),
                func.count(Read.id),
                positive,
                func.count(distinct(Read.reader)),
            ).group_by(Read.finding)
        )
    ]
    return {
        "studies_with_labels": as_int(labelled),
        "studies_without": studies - as_int(labelled),
        "reads": as_int(reads),
        "readers": as_int(readers),
        "by_finding": by_count(by_finding, "studies"),
        "case_attributes": counted(
            session,
            "studies",
            func.count(distinct(CaseAttribute.study_pk)),
            name=CaseAttribute.name,
        ),
    }


def _deidentified(session: Session) -> dict[str, int]:
    stmt = select(Instance.deidentified, func.count(Instance.id)).group_by(Instance.deidentified)
    counts = {bool(flag): as_int(n) for flag, n in session.execute(stmt)}
    return {"instances": counts.get(True, 0), "not_deidentified": counts.get(False, 0)}


def _receipts(session: Session) -> dict[str, int]:
    stmt = select(Receipt.outcome, func.count(Receipt.id)).group_by(Receipt.outcome)
    counts = {ReceiptOutcome(outcome): as_int(n) for outcome, n in session.execute(stmt)}
    return {outcome.value: counts.get(outcome, 0) for outcome in ReceiptOutcome}
