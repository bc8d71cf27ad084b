"""What drift monitoring compares: one row of features per study, in arrival order.

Header fields come from radpilot's index (nothing is re-read from disk): device and
protocol of the study's first instance, acquisition values, site, patient age and sex.
With a model, each row also carries that model's result — its headline score and whether
it was positive — and the statistics of the image as the network received it, with the
source intensity range its preprocessing mapped (``input_stats``, written by
:func:`radpilot.models.inference.input_stats`), so that a contrast change is seen even
when every header is unchanged; and, where the model's manifest declares one, the
network's embedding of the study (``result_embeddings``) with the version that made it,
since two versions' embeddings are not comparable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from radpilot.store.models import Instance, Patient, Series, Study
from radpilot.store.models_pipeline import ModelVersion, Result, ResultEmbedding

__all__ = ["CATEGORICAL", "NUMERIC", "StudyFeatures", "study_features"]

#: Categorical features: name -> where it comes from.
CATEGORICAL: tuple[str, ...] = (
    "manufacturer",
    "scanner_model",
    "software_versions",
    "protocol",
    "series_description",
    "convolution_kernel",
    "view_position",
    "site",
    "sex",
    "transfer_syntax",
    "bits_stored",
)
#: Numeric features (``input_*`` and ``score`` only with a model).
NUMERIC: tuple[str, ...] = (
    "kvp",
    "slice_thickness",
    "pixel_spacing",
    "age_years",
    "rows",
    "columns",
    "input_mean",
    "input_std",
    "input_p05",
    "input_p50",
    "input_p95",
    "input_low",
    "input_high",
    "score",
)


@dataclass(frozen=True)
class StudyFeatures:
    """One study's features; ``positive`` is None without a result of the model, and
    ``embedding`` None where its version declares no embedding."""

    study_id: int
    received_at: dt.datetime
    categorical: dict[str, str | None] = field(default_factory=dict)
    numeric: dict[str, float | None] = field(default_factory=dict)
    positive: bool | None = None
    version: str | None = None  # the model version of the result
    embedding: npt.NDArray[np.float32] | None = None


def _spacing(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(text.replace("\\", " ").split()[0])
    except (ValueError, IndexError):
        return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def study_features(
    session: Session,
    model: str | None = None,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    study_ids: Sequence[int] | None = None,
) -> list[StudyFeatures]:
    """Feature rows of complete studies, oldest first.

    With ``model`` (a name), only studies with a visible result of one of its versions,
    each with its newest such result; without, every complete study.
    """
    first = (
        select(Series.study_pk.label("study_pk"), func.min(Instance.id).label("instance_pk"))
        .join(Instance, Instance.series_pk == Series.id)
        .group_by(Series.study_pk)
        .subquery()
    )
    query = (  # outer joins: a study whose files are gone still counts (headers unknown)
        select(Study, Patient, Series, Instance)
        .join(Patient, Study.patient_pk == Patient.id)
        .outerjoin(first, first.c.study_pk == Study.id)
        .outerjoin(Instance, Instance.id == first.c.instance_pk)
        .outerjoin(Series, Instance.series_pk == Series.id)
        .where(Study.completed_at.is_not(None))
        .order_by(Study.last_received_at, Study.id)
    )
    if since is not None:
        query = query.where(Study.last_received_at >= since)
    if until is not None:
        query = query.where(Study.last_received_at < until)
    if study_ids is not None:
        query = query.where(Study.id.in_(list(study_ids)))
    results: dict[int, Result] = {}
    versions: dict[int, str] = {}  # result id -> its model version
    if model is not None:
        newest = (
            select(Result, ModelVersion.version)
            .join(ModelVersion, Result.model_version_pk == ModelVersion.id)
            .where(ModelVersion.name == model, Result.visible.is_(True))
            .order_by(Result.study_pk, Result.id)
        )
        for found, version in session.execute(newest).all():
            results[found.study_pk] = found  # the last one wins
            versions[found.id] = version
        query = query.where(Study.id.in_(list(results)))
    embeddings = _embeddings(session, [r.id for r in results.values()])
    rows = []
    for study, patient, series, instance in session.execute(query).all():
        result = results.get(study.id)
        stats = (result.details or {}).get("input_stats", {}) if result is not None else {}
        s = series if series is not None else Series()
        i = instance if instance is not None else Instance()
        rows.append(
            StudyFeatures(
                study_id=study.id,
                received_at=study.last_received_at,
                categorical={
                    "manufacturer": s.manufacturer,
                    "scanner_model": s.manufacturer_model_name,
                    "software_versions": s.software_versions,
                    "protocol": s.protocol_name,
                    "series_description": s.series_description,
                    "convolution_kernel": s.convolution_kernel,
                    "view_position": s.view_position,
                    "site": s.institution_name or study.institution_name,
                    "sex": patient.sex,
                    "transfer_syntax": i.transfer_syntax_uid,
                    "bits_stored": _text(i.bits_stored),
                },
                numeric={
                    "kvp": _number(i.kvp),
                    "slice_thickness": _number(i.slice_thickness),
                    "pixel_spacing": _spacing(i.pixel_spacing),
                    "age_years": _number(study.patient_age_years),
                    "rows": _number(i.rows),
                    "columns": _number(i.columns),
                    "input_mean": _number(stats.get("mean")),
                    "input_std": _number(stats.get("std")),
                    "input_p05": _number(stats.get("p05")),
                    "input_p50": _number(stats.get("p50")),
                    "input_p95": _number(stats.get("p95")),
                    "input_low": _number(stats.get("low")),
                    "input_high": _number(stats.get("high")),
                    "score": None if result is None else _number(result.score),
                },
                positive=None if result is None else bool(result.positive),
                version=None if result is None else versions[result.id],
                embedding=None if result is None else embeddings.get(result.id),
            )
        )
    return rows


def _embeddings(session: Session, result_ids: list[int]) -> dict[int, npt.NDArray[np.float32]]:
    """Result id -> embedding vector, for the results that have one."""
    found: dict[int, npt.NDArray[np.float32]] = {}
    for start in range(0, len(result_ids), 500):  # bounded IN lists
        chunk = result_ids[start : start + 500]
        for row in session.scalars(
            select(ResultEmbedding).where(ResultEmbedding.result_pk.in_(chunk))
        ):
            vector = np.frombuffer(row.vector, dtype="<f4").astype(np.float32)
            if vector.size == row.dimensions:
                found[row.result_pk] = vector
    return found
