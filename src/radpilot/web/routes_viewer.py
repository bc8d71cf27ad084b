"""What the study page's viewer loads: the images of a study, their pixels in modality
units, and the AI overlays (heatmap, segmentation contours).

Pixels travel as little-endian float32 after the Modality LUT (rescale slope/intercept or
LUT sequence, per frame for enhanced objects), so that the browser windows them itself —
window/level by dragging stays instant, and the values are exact (Hounsfield units for
CT). Decoding stays on the server (pydicom with pylibjpeg, OpenJPEG and CharLS), so every
transfer syntax radpilot accepts is viewable without codecs in the browser. Colour images
come as PNG. Ids in the URLs are database ids; no UID or patient identifier appears.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
from pathlib import Path

import numpy as np
import pydicom
from fastapi import APIRouter, Depends, HTTPException, Response, status
from pydantic import BaseModel
from sqlalchemy import select

from radpilot.core.errors import ModelError, StorageError
from radpilot.core.settings import Settings
from radpilot.models.pixels import frame_count, frame_of
from radpilot.pipeline.worklist import find_study
from radpilot.store import Database, archive_from_settings
from radpilot.store.models import Instance, Series
from radpilot.store.models_pipeline import Result, ResultObject
from radpilot.web.deps import DbDep, SettingsDep, current_actor
from radpilot.web.rendering import encode, window_of
from radpilot.web.schemas import ErrorOut

__all__ = ["PIXELS_TYPE", "ImageOut", "SeriesImagesOut", "router"]

log = logging.getLogger(__name__)

PIXELS_TYPE = "application/octet-stream"
_NO_STORE = {"Cache-Control": "no-store"}

router = APIRouter(
    prefix="/api/viewer",
    tags=["viewer"],
    dependencies=[Depends(current_actor)],
    responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)


class ImageOut(BaseModel):
    """One instance as the viewer pages through it."""

    id: int
    sop_instance_uid: str  # to match AI results' image references, never put in a URL
    instance_number: int | None
    frames: int
    rows: int | None
    columns: int | None
    photometric: str | None
    pixel_spacing: str | None


class SeriesImagesOut(BaseModel):
    """A series and its instances in viewing order."""

    id: int
    series_number: int | None
    modality: str | None
    series_description: str | None
    images: list[ImageOut]


@router.get("/studies/{study_id}/images", response_model=list[SeriesImagesOut])
def study_images(db: DbDep, study_id: int, response: Response) -> list[SeriesImagesOut]:
    """Every series of the study with its instances, by series then instance number."""
    response.headers.update(_NO_STORE)
    with db.session() as session:
        study = find_study(session, study_id)
        rows = session.execute(
            select(Instance, Series)
            .join(Series, Instance.series_pk == Series.id)
            .where(Series.study_pk == study.id)
            .order_by(Series.series_number, Series.id, Instance.instance_number, Instance.id)
        ).all()
    out: dict[int, SeriesImagesOut] = {}
    for instance, series in rows:
        entry = out.setdefault(
            series.id,
            SeriesImagesOut(
                id=series.id,
                series_number=series.series_number,
                modality=series.modality,
                series_description=series.series_description,
                images=[],
            ),
        )
        entry.images.append(
            ImageOut(
                id=instance.id,
                sop_instance_uid=instance.sop_instance_uid,
                instance_number=instance.instance_number,
                frames=instance.number_of_frames or 1,
                rows=instance.rows,
                columns=instance.columns,
                photometric=instance.photometric_interpretation,
                pixel_spacing=instance.pixel_spacing,
            )
        )
    return list(out.values())


def _dataset(db: Database, settings: Settings, instance_id: int) -> pydicom.Dataset:
    with db.session() as session:
        path = session.scalars(select(Instance.file_path).where(Instance.id == instance_id)).first()
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such image")
    return pydicom.dcmread(archive_from_settings(settings).path(path))


@router.get(
    "/instances/{instance_id}/frames/{frame}",
    response_class=Response,
    responses={200: {"content": {PIXELS_TYPE: {}, "image/png": {}}}},
)
def frame_pixels(db: DbDep, settings: SettingsDep, instance_id: int, frame: int) -> Response:
    """Frame ``frame`` (1-based): float32 values (``X-Rows``, ``X-Columns``,
    ``X-Window``: the instance's own center,width, ``X-Monochrome1``), or PNG for colour."""
    ds = _dataset(db, settings, instance_id)
    if not 1 <= frame <= frame_count(ds):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"the image has {frame_count(ds)} frame(s), not {frame}"
        )
    try:
        chosen = frame_of(ds, frame)  # that frame only
    except ModelError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    if chosen.colour:
        values = chosen.values
        top = 255.0 if values.max() <= 255 else float(values.max())
        picture = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Response(encode(picture), media_type="image/png", headers=_NO_STORE)
    values = chosen.values
    center, width = window_of(ds, values)
    headers = {
        **_NO_STORE,
        "X-Rows": str(values.shape[0]),
        "X-Columns": str(values.shape[1]),
        "X-Window": f"{center:.6g},{width:.6g}",
        "X-Monochrome1": "1" if chosen.monochrome1 else "0",
    }
    data = np.ascontiguousarray(values, dtype="<f4").tobytes()
    return Response(data, media_type=PIXELS_TYPE, headers=headers)


def _object(db: Database, settings: Settings, result_id: int, kind: str) -> bytes:
    """A visible result's object of ``kind``, checked against its recorded checksum."""
    with db.session() as session:
        row = session.execute(
            select(ResultObject.path, ResultObject.sha256)
            .join(Result, ResultObject.result_pk == Result.id)
            .where(Result.id == result_id, Result.visible.is_(True), ResultObject.kind == kind)
            .order_by(ResultObject.id)
            .limit(1)
        ).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"this result has no {kind}")
    root = Path(settings.data_dir).resolve()
    path = (root / str(row.path)).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the {kind} file is missing")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != str(row.sha256):
        raise StorageError(
            f"a stored {kind} no longer matches the checksum recorded when it was written; "
            "an administrator should check the data directory"
        )
    return data


@router.get(
    "/results/{result_id}/heatmap",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def heatmap(db: DbDep, settings: SettingsDep, result_id: int) -> Response:
    """A classifier's attribution over its key image, 0-1 as 8-bit grey PNG (the page
    colours it and sets its opacity)."""
    data = _object(db, settings, result_id, "heatmap")
    values = np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32)
    picture = np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Response(encode(picture), media_type="image/png", headers=_NO_STORE)


class MaskOut(BaseModel):
    """One segment on one source frame: the mask as a PNG data URL (the page draws its
    outline)."""

    label: str
    sop_instance_uid: str
    frame: int
    png: str


@router.get("/results/{result_id}/masks", response_model=list[MaskOut])
def masks(db: DbDep, settings: SettingsDep, result_id: int) -> list[MaskOut]:
    """The segments of a result's DICOM SEG, per source frame they cover (read back with
    highdicom, so the page shows what PACS received)."""
    import highdicom as hd

    data = _object(db, settings, result_id, "seg")
    seg = hd.seg.segread(io.BytesIO(data))
    labels = {d.SegmentNumber: str(d.SegmentLabel) for d in seg.SegmentSequence}
    out: list[MaskOut] = []
    for _study, _series, uid in seg.get_source_image_uids():
        try:
            volume = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=[uid], segment_numbers=sorted(labels)
            )
        except (ValueError, KeyError, AttributeError) as exc:
            # A source the SEG does not cover frame by frame (e.g. a multi-frame source):
            # its contours are not drawn, and the log says why (without the UID).
            log.warning(
                "result %d: SEG has no per-frame mask for one source (%s: %s)",
                result_id,
                type(exc).__name__,
                exc,
            )
            continue
        for index, number in enumerate(sorted(labels)):
            mask = np.asarray(volume[0, :, :, index]) > 0
            if not mask.any():
                continue
            png = encode(mask.astype(np.uint8) * 255)
            out.append(
                MaskOut(
                    label=labels[number],
                    sop_instance_uid=uid,
                    frame=1,
                    png="data:image/png;base64," + base64.b64encode(png).decode("ascii"),
                )
            )
    return out
