"""DICOMweb for other viewers and clients: QIDO-RS search and WADO-RS retrieve (PS3.18).

- ``GET /dicomweb/studies``, ``/studies/{study}/series``, ``/studies/{study}/series/{series}/
  instances``: search, ``application/dicom+json``, from radpilot's index. Matching on
  ``StudyInstanceUID``, ``AccessionNumber``, ``StudyDate`` (a date or a ``FROM-TO`` range),
  ``ModalitiesInStudy`` / ``Modality``, ``SeriesInstanceUID``, ``SOPInstanceUID``;
  ``limit`` and ``offset``. Patient identifiers are returned in the body (a viewer needs
  them) but are not search keys, so that none appears in a URL or an access log.
- ``GET /dicomweb/studies/{study}[/series/{series}[/instances/{instance}]]``: the instances
  as ``multipart/related; type="application/dicom"``, each part the archived file byte for
  byte; ``.../metadata``: their headers as DICOM JSON, without bulk data.

Every route needs sign-in like the rest of the API. Unknown UIDs answer 404.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

import pydicom
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload

from radpilot.store.models import Instance, Series, Study
from radpilot.web.deps import DbDep, SettingsDep, current_actor

__all__ = ["router"]

DICOM_JSON = "application/dicom+json"

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"], dependencies=[Depends(current_actor)])

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]


def _element(vr: str, value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": str(value)}]}
    return {"vr": vr, "Value": value if isinstance(value, list) else [value]}


def _json(body: list[dict[str, Any]]) -> Response:
    return Response(json.dumps(body), media_type=DICOM_JSON)


def _date_filter(query: Select[Any], text: str | None) -> Select[Any]:
    if not text:
        return query
    low, sep, high = text.partition("-")
    if not sep:
        return query.where(Study.study_date == low)
    if low:
        query = query.where(Study.study_date >= low)
    if high:
        query = query.where(Study.study_date <= high)
    return query


def _study_rows(session: Session, studies: Sequence[Study], base: str) -> list[dict[str, Any]]:
    """The QIDO-RS study rows; the page's series and instance counts in one query."""
    counts: dict[int, tuple[set[str], int, int]] = {s.id: (set(), 0, 0) for s in studies}
    per_series = session.execute(
        select(Series.study_pk, Series.modality, func.count(Instance.id))
        .outerjoin(Instance, Instance.series_pk == Series.id)
        .where(Series.study_pk.in_(list(counts)))
        .group_by(Series.id, Series.study_pk, Series.modality)
    ).all()
    for study_pk, modality, instances in per_series:
        modalities, series, total = counts[study_pk]
        counts[study_pk] = (modalities | ({modality} if modality else set()), series + 1,
                            total + int(instances))  # fmt: skip
    rows = []
    for study in studies:
        modalities, series, instances = counts[study.id]
        patient = study.patient
        rows.append({
            "00080020": _element("DA", study.study_date),
            "00080030": _element("TM", study.study_time),
            "00080050": _element("SH", study.accession_number),
            "00080061": _element("CS", sorted(modalities)),
            "00081030": _element("LO", study.study_description),
            "00081190": _element("UR", f"{base}/studies/{study.study_instance_uid}"),
            "00100010": _element("PN", patient.patient_name),
            "00100020": _element("LO", patient.patient_id),
            "00100030": _element("DA", patient.birth_date),
            "00100040": _element("CS", patient.sex),
            "0020000D": _element("UI", study.study_instance_uid),
            "00201206": _element("IS", series),
            "00201208": _element("IS", instances),
        })  # fmt: skip
    return rows


@router.get("/studies", response_class=Response, summary="QIDO-RS: search for studies")
def search_studies(
    request: Request,
    db: DbDep,
    StudyInstanceUID: str | None = None,  # noqa: N803 - DICOMweb's attribute keywords
    AccessionNumber: str | None = None,  # noqa: N803
    StudyDate: str | None = None,  # noqa: N803
    ModalitiesInStudy: str | None = None,  # noqa: N803
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    """Studies matching every key given, in order of arrival."""
    query = select(Study).order_by(Study.id)
    if StudyInstanceUID:
        query = query.where(Study.study_instance_uid.in_(StudyInstanceUID.split(",")))
    if AccessionNumber:
        query = query.where(Study.accession_number == AccessionNumber)
    query = _date_filter(query, StudyDate)
    if ModalitiesInStudy:
        query = query.where(
            Study.id.in_(
                select(Series.study_pk).where(Series.modality.in_(ModalitiesInStudy.split(",")))
            )
        )
    with db.session() as session:
        studies = session.scalars(
            query.options(selectinload(Study.patient)).offset(offset).limit(limit)
        ).all()
        base = str(request.url_for("search_studies")).removesuffix("/studies")
        return _json(_study_rows(session, studies, base))


def _study(session: Session, uid: str) -> Study:
    study = session.scalars(select(Study).where(Study.study_instance_uid == uid)).one_or_none()
    if study is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no study with this Study Instance UID")
    return study


def _series_of(session: Session, study: Study, uid: str | None) -> list[Series]:
    query = select(Series).where(Series.study_pk == study.id).order_by(Series.id)
    if uid is not None:
        query = query.where(Series.series_instance_uid == uid)
    found = list(session.scalars(query))
    if uid is not None and not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such series in this study")
    return found


@router.get("/studies/{study}/series", response_class=Response, summary="QIDO-RS: series")
def search_series(
    study: str, db: DbDep, Modality: str | None = None,  # noqa: N803
    limit: Limit = 100, offset: Offset = 0,
) -> Response:  # fmt: skip
    """The series of a study."""
    with db.session() as session:
        found = _series_of(session, _study(session, study), None)
        if Modality:
            found = [s for s in found if s.modality in Modality.split(",")]
        page = found[offset : offset + limit]
        counts: dict[int, int] = dict(session.execute(
            select(Instance.series_pk, func.count(Instance.id))
            .where(Instance.series_pk.in_([s.id for s in page]))
            .group_by(Instance.series_pk)
        ).all())  # fmt: skip
        rows = []
        for series in page:
            rows.append({
                "00080060": _element("CS", series.modality),
                "0008103E": _element("LO", series.series_description),
                "0020000D": _element("UI", study),
                "0020000E": _element("UI", series.series_instance_uid),
                "00200011": _element("IS", series.series_number),
                "00201209": _element("IS", counts.get(series.id, 0)),
            })  # fmt: skip
        return _json(rows)


def _instances(
    session: Session, study: str, series: str | None, instance: str | None
) -> list[tuple[Instance, Series]]:
    found = _series_of(session, _study(session, study), series)
    query = (
        select(Instance, Series)
        .join(Series, Instance.series_pk == Series.id)
        .where(Instance.series_pk.in_([s.id for s in found]))
        .order_by(Series.id, Instance.instance_number, Instance.id)
    )
    if instance is not None:
        query = query.where(Instance.sop_instance_uid == instance)
    rows = [(i, s) for i, s in session.execute(query).all()]
    if instance is not None and not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such instance in this series")
    return rows


@router.get("/studies/{study}/series/{series}/instances", response_class=Response,
            summary="QIDO-RS: instances")  # fmt: skip
def search_instances(
    study: str, series: str, db: DbDep, limit: Limit = 100, offset: Offset = 0
) -> Response:
    """The instances of a series."""
    with db.session() as session:
        rows = _instances(session, study, series, None)[offset : offset + limit]
        return _json([{
            "00080016": _element("UI", i.sop_class_uid),
            "00080018": _element("UI", i.sop_instance_uid),
            "0020000D": _element("UI", study),
            "0020000E": _element("UI", s.series_instance_uid),
            "00200013": _element("IS", i.instance_number),
            "00280010": _element("US", i.rows),
            "00280011": _element("US", i.columns),
        } for i, s in rows])  # fmt: skip


def _multipart(paths: list[Any], archive: Any) -> StreamingResponse:
    boundary = uuid.uuid4().hex

    def parts() -> Iterator[bytes]:
        for path in paths:
            data = archive.read_bytes(path)
            yield (f"--{boundary}\r\nContent-Type: application/dicom\r\n"
                   f"Content-Length: {len(data)}\r\n\r\n").encode()  # fmt: skip
            yield data
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    media = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return StreamingResponse(parts(), media_type=media)


def _retrieve(db: Any, settings: Any, study: str, series: str | None,
              instance: str | None) -> StreamingResponse:  # fmt: skip
    from radpilot.store import archive_from_settings

    with db.session() as session:
        paths = [i.file_path for i, _ in _instances(session, study, series, instance)]
    return _multipart(paths, archive_from_settings(settings))


def _metadata(db: Any, settings: Any, study: str, series: str | None) -> Response:
    from radpilot.store import archive_from_settings

    archive = archive_from_settings(settings)
    with db.session() as session:
        paths = [i.file_path for i, _ in _instances(session, study, series, None)]
    body = []
    for path in paths:
        ds = pydicom.dcmread(archive.path(path), stop_before_pixels=True)
        body.append(ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=_drop))
    return _json(body)


def _drop(_element: Any) -> str:
    return ""  # bulk data is not served by URI here; the value is left out


@router.get("/studies/{study}", summary="WADO-RS: a study's instances")
def retrieve_study(study: str, db: DbDep, settings: SettingsDep) -> StreamingResponse:
    """Every instance of the study as multipart/related application/dicom."""
    return _retrieve(db, settings, study, None, None)


@router.get("/studies/{study}/metadata", response_class=Response, summary="WADO-RS: metadata")
def study_metadata(study: str, db: DbDep, settings: SettingsDep) -> Response:
    """The headers of every instance of the study (DICOM JSON, no bulk data)."""
    return _metadata(db, settings, study, None)


@router.get("/studies/{study}/series/{series}", summary="WADO-RS: a series' instances")
def retrieve_series(study: str, series: str, db: DbDep, settings: SettingsDep) -> StreamingResponse:
    """Every instance of the series."""
    return _retrieve(db, settings, study, series, None)


@router.get("/studies/{study}/series/{series}/metadata", response_class=Response,
            summary="WADO-RS: series metadata")  # fmt: skip
def series_metadata(study: str, series: str, db: DbDep, settings: SettingsDep) -> Response:
    """The headers of every instance of the series."""
    return _metadata(db, settings, study, series)


@router.get("/studies/{study}/series/{series}/instances/{instance}",
            summary="WADO-RS: one instance")  # fmt: skip
def retrieve_instance(
    study: str, series: str, instance: str, db: DbDep, settings: SettingsDep
) -> StreamingResponse:
    """One instance, byte for byte as archived."""
    return _retrieve(db, settings, study, series, instance)


def _window(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    parts = text.split(",")
    try:
        center, width = float(parts[0]), float(parts[1])
    except (IndexError, ValueError):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "window is center,width[,linear]"
        ) from None
    if width < 1 or (len(parts) > 2 and parts[2].strip().lower() != "linear"):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "window: width >= 1, function linear"
        )
    return center, width


def _rendered(db: Any, settings: Any, study: str, series: str, instance: str, frame: int,
              window: str | None, accept: str | None) -> Response:  # fmt: skip
    from radpilot.core.errors import ModelError
    from radpilot.store import archive_from_settings
    from radpilot.web.rendering import encode, render_frame

    with db.session() as session:
        ((row, _),) = _instances(session, study, series, instance)
        path = row.file_path
    ds = pydicom.dcmread(archive_from_settings(settings).path(path))
    try:
        picture = render_frame(ds, frame, _window(window))
    except IndexError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except ModelError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    media = "image/jpeg" if accept and "image/jpeg" in accept and "image/png" not in accept else (
        "image/png")  # fmt: skip
    return Response(encode(picture, media), media_type=media)


@router.get("/studies/{study}/series/{series}/instances/{instance}/rendered",
            response_class=Response, summary="WADO-RS: rendered instance")  # fmt: skip
def rendered_instance(
    study: str, series: str, instance: str, db: DbDep, settings: SettingsDep,
    window: str | None = None, accept: Annotated[str | None, Header()] = None,
) -> Response:  # fmt: skip
    """The first frame as PNG (or JPEG when only that is accepted), windowed."""
    return _rendered(db, settings, study, series, instance, 1, window, accept)


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered",
            response_class=Response, summary="WADO-RS: rendered frame")  # fmt: skip
def rendered_frame(
    study: str, series: str, instance: str, frame: int, db: DbDep, settings: SettingsDep,
    window: str | None = None, accept: Annotated[str | None, Header()] = None,
) -> Response:  # fmt: skip
    """One frame (1-based) as PNG or JPEG, windowed."""
    return _rendered(db, settings, study, series, instance, frame, window, accept)
