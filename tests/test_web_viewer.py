"""The viewer's routes on real files: pixels after the Modality LUT (CT rescale, JPEG 2000,
JPEG-LS), MONOCHROME1, multi-frame, colour; the heatmap and the SEG contours' masks."""

from __future__ import annotations

import base64
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import apply_modality_lut
from sqlalchemy import select
from starlette.exceptions import StarletteDeprecationWarning
from typer.testing import CliRunner

from radpilot.core.settings import Settings
from radpilot.models.prediction import Prediction
from radpilot.results.seg import build_seg
from radpilot.store import Database
from radpilot.store.models import Instance, Study
from tests.conftest import pydicom_data_files
from tests.helpers_worklist import Rows
from tests.results_helpers import ct_series, make_ctx, ref_of

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx`", category=StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

FILES = ("693_J2KR.dcm", "RG1_UNCI.dcm", "emri_small_jpeg_ls_lossless.dcm", "SC_rgb.dcm")
BEARER = {"Authorization": "Bearer tok-viewer"}


@pytest.fixture
def viewer(tmp_path: Path) -> Iterator[dict[str, Any]]:
    from radpilot.cli.main import _register, app
    from radpilot.web.app import create_app

    _register()
    by_name = {p.name: p for p in pydicom_data_files()}
    data_dir, url = tmp_path / "data", f"sqlite:///{tmp_path / 'radpilot.db'}"
    ingest = CliRunner().invoke(
        app,
        ["--data-dir", str(data_dir), "ingest", *(str(by_name[n]) for n in FILES)],
        env={"RADPILOT_DATABASE_URL": url, "RADPILOT_FSYNC": "false"},
    )
    assert ingest.exit_code == 0, ingest.output
    db = Database(url)
    db.migrate()
    settings = Settings(data_dir=data_dir, database_url=url, api_tokens={"dr.v": "tok-viewer"})
    with TestClient(create_app(settings, db), headers=BEARER) as client:
        yield {"client": client, "db": db, "data_dir": data_dir, "files": by_name}
    db.dispose()


def instance_id(db: Database, sop_uid: str) -> int:
    with db.session() as session:
        found = session.scalar(select(Instance.id).where(Instance.sop_instance_uid == sop_uid))
    assert found is not None
    return int(found)


def study_of(db: Database, sop_uid: str) -> Study:
    with db.session() as session:
        instance = session.scalars(
            select(Instance).where(Instance.sop_instance_uid == sop_uid)
        ).one()
        study = session.get(Study, instance.series.study_pk)
        assert study is not None
        return study


def test_frames_are_modality_values(viewer: dict[str, Any]) -> None:
    client, db = viewer["client"], viewer["db"]
    for name in ("693_J2KR.dcm", "RG1_UNCI.dcm", "emri_small_jpeg_ls_lossless.dcm"):
        ds = pydicom.dcmread(viewer["files"][name])
        pk = instance_id(db, str(ds.SOPInstanceUID))
        frames = int(ds.get("NumberOfFrames") or 1)
        expected = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float32)
        expected = expected.reshape(frames, int(ds.Rows), int(ds.Columns))
        for frame in {1, frames}:
            answer = client.get(f"/api/viewer/instances/{pk}/frames/{frame}")
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == "application/octet-stream"
            rows, columns = int(answer.headers["x-rows"]), int(answer.headers["x-columns"])
            assert (rows, columns) == (ds.Rows, ds.Columns)
            values = np.frombuffer(answer.content, dtype="<f4").reshape(rows, columns)
            assert np.array_equal(values, expected[frame - 1]), (name, frame)
            assert answer.headers["x-monochrome1"] == (
                "1" if ds.PhotometricInterpretation == "MONOCHROME1" else "0"
            )
            assert answer.headers["cache-control"] == "no-store"
        missing = client.get(f"/api/viewer/instances/{pk}/frames/{frames + 1}")
        assert missing.status_code == 404 and f"{frames} frame(s)" in missing.json()["detail"]
    ct = pydicom.dcmread(viewer["files"]["693_J2KR.dcm"])
    answer = client.get(f"/api/viewer/instances/{instance_id(db, ct.SOPInstanceUID)}/frames/1")
    center, width = (float(v) for v in answer.headers["x-window"].split(","))
    own = (ct.WindowCenter, ct.WindowWidth)
    first = [float(v[0]) if isinstance(v, pydicom.multival.MultiValue) else float(v) for v in own]
    assert (center, width) == pytest.approx(first, rel=1e-5)
    assert np.frombuffer(answer.content, dtype="<f4").min() < -500  # Hounsfield, not stored


def test_colour_is_png_and_the_series_lists_every_frame(viewer: dict[str, Any]) -> None:
    client, db = viewer["client"], viewer["db"]
    ds = pydicom.dcmread(viewer["files"]["SC_rgb.dcm"])
    answer = client.get(f"/api/viewer/instances/{instance_id(db, ds.SOPInstanceUID)}/frames/1")
    assert answer.headers["content-type"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(answer.content))), ds.pixel_array)
    mr = pydicom.dcmread(viewer["files"]["emri_small_jpeg_ls_lossless.dcm"])
    study = study_of(db, str(mr.SOPInstanceUID))
    (series,) = client.get(f"/api/viewer/studies/{study.id}/images").json()
    (image,) = series["images"]
    assert image["frames"] == 10 and image["sop_instance_uid"] == mr.SOPInstanceUID
    assert client.get("/api/viewer/studies/987654/images").status_code == 404


def test_heatmap_and_masks(viewer: dict[str, Any]) -> None:
    client, db = viewer["client"], viewer["db"]
    cr = pydicom.dcmread(viewer["files"]["RG1_UNCI.dcm"])
    heat = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(64, 48)
    buffer = io.BytesIO()
    np.save(buffer, heat.astype(np.float16), allow_pickle=False)
    series = ct_series()
    masks = np.zeros((len(series), int(series[0].Rows), int(series[0].Columns)), dtype=bool)
    masks[2, 4:10, 3:12] = True
    prediction = Prediction(
        task="segmentation", images=[ref_of(ds) for ds in series], masks={"nodule": masks}
    )
    seg = io.BytesIO()
    build_seg(prediction, series, make_ctx(task="segmentation")).save_as(
        seg, enforce_file_format=True
    )
    study = study_of(db, str(cr.SOPInstanceUID))
    with db.session() as session:
        rows = Rows(session, viewer["data_dir"])
        model = rows.model("chest", "1.0")
        owner = session.get(Study, study.id)
        assert owner is not None
        job = rows.job(owner, model)
        result = rows.result(job, "pneumonia", 0.9)
        rows.obj(result, "heatmap", buffer.getvalue(), name="heatmap.npy")
        rows.obj(result, "seg", seg.getvalue(), name="seg.dcm")
        shadow = rows.result(rows.job(owner, model), "x", 0.9)
        shadow.visible = False
        rows.obj(shadow, "heatmap", buffer.getvalue(), name="heatmap.npy")
        session.commit()
        ids = (result.id, shadow.id)
    png = client.get(f"/api/viewer/results/{ids[0]}/heatmap")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    grey = np.asarray(Image.open(io.BytesIO(png.content)))
    expected = np.rint(heat.astype(np.float16).astype(np.float32) * 255).astype(np.uint8)
    assert np.array_equal(grey, expected)
    assert client.get(f"/api/viewer/results/{ids[1]}/heatmap").status_code == 404  # shadow
    (mask,) = client.get(f"/api/viewer/results/{ids[0]}/masks").json()
    assert mask["label"] == "nodule" and mask["sop_instance_uid"] == series[2].SOPInstanceUID
    decoded = Image.open(io.BytesIO(base64.b64decode(mask["png"].split(",", 1)[1])))
    assert np.array_equal(np.asarray(decoded) > 0, masks[2])
    assert client.get(f"/api/viewer/results/{ids[0]}/masks").status_code == 200
    no_seg = client.get(f"/api/viewer/results/{ids[1]}/masks")
    assert no_seg.status_code == 404 and "no seg" in no_seg.json()["detail"]
