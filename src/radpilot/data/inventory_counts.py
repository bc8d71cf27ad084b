"""Counting helpers of the inventory: totals, device/protocol groups, image attributes.

Each function runs ``GROUP BY`` queries and returns JSON-ready rows sorted by count.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydicom.uid import UID
from sqlalchemy import ColumnElement, SQLColumnExpression, distinct, func, select
from sqlalchemy.orm import Session

from radpilot.data.inventory_problems import COMMON_TRANSFER_SYNTAXES
from radpilot.store.models import Instance, Patient, Series, Study

__all__ = [
    "as_int",
    "by_count",
    "counted",
    "image_attributes",
    "series_counts",
    "totals",
    "transfer_syntaxes",
]


def as_int(value: Any) -> int:
    """A count or sum as ``int`` (``None`` is 0; PostgreSQL sums BIGINT as Decimal)."""
    return int(value or 0)


def by_count(rows: Iterable[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """``rows`` by ``key`` descending, then by their other values (a stable order)."""

    def order(row: dict[str, Any]) -> tuple[int, str]:
        names = "\x00".join("" if v is None else str(v) for k, v in row.items() if k != key)
        return (-int(row[key]), names)

    return sorted(rows, key=order)


def totals(session: Session) -> dict[str, int]:
    """Patients, studies, series, instances, frames and stored bytes."""
    instances = session.execute(
        select(
            func.count(Instance.id),
            func.sum(Instance.file_size),
            func.sum(func.coalesce(Instance.number_of_frames, 1)),
        )
    ).one()
    return {
        "patients": as_int(session.scalar(select(func.count(Patient.id)))),
        "studies": as_int(session.scalar(select(func.count(Study.id)))),
        "series": as_int(session.scalar(select(func.count(Series.id)))),
        "instances": as_int(instances[0]),
        "frames": as_int(instances[2]),
        "bytes": as_int(instances[1]),
    }


def series_counts(session: Session, **dims: SQLColumnExpression[Any]) -> list[dict[str, Any]]:
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
        entry.update(
            studies=as_int(studies),
            series=as_int(series),
            instances=as_int(instances),
            bytes=as_int(size),
        )
        rows.append(entry)
    return by_count(rows, "instances")


def counted(
    session: Session, metric: str, count: ColumnElement[Any], **dims: SQLColumnExpression[Any]
) -> list[dict[str, Any]]:
    """``count`` (named ``metric``) per combination of ``dims``, all from one table."""
    columns = list(dims.values())
    rows = [
        {**dict(zip(dims, row[:-1], strict=True)), metric: as_int(row[-1])}
        for row in session.execute(select(*columns, count).group_by(*columns))
    ]
    return by_count(rows, metric)


def image_attributes(session: Session) -> dict[str, list[dict[str, Any]]]:
    """Instances per SOP class, matrix size, pixel spacing, slice thickness, kVp, ..."""
    n = func.count(Instance.id)
    sop_classes = counted(session, "instances", n, uid=Instance.sop_class_uid)
    for row in sop_classes:
        row["name"] = UID(row["uid"]).name
    return {
        "sop_classes": sop_classes,
        "rows_columns": counted(
            session, "instances", n, rows=Instance.rows, columns=Instance.columns
        ),
        "pixel_spacing": counted(session, "instances", n, value=Instance.pixel_spacing),
        "slice_thickness": counted(session, "instances", n, value=Instance.slice_thickness),
        "kvp": counted(session, "instances", n, value=Instance.kvp),
        "photometric_interpretation": counted(
            session, "instances", n, value=Instance.photometric_interpretation
        ),
    }


def transfer_syntaxes(session: Session) -> list[dict[str, Any]]:
    """Instances per transfer syntax, with its name and whether it is common."""
    rows = counted(session, "instances", func.count(Instance.id), uid=Instance.transfer_syntax_uid)
    for row in rows:
        row["name"] = UID(row["uid"]).name
        row["common"] = row["uid"] in COMMON_TRANSFER_SYNTAXES
    return rows
