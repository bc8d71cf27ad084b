"""DICOMweb (QIDO-RS and WADO-RS) served by radpilot, used through ``dicomweb-client``."""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.data import get_testdata_file

from radpilot.core.settings import Settings
from radpilot.store import Database
from radpilot.web.server import WebServer
from tests.pipeline_helpers import ingest

TOKEN = "tok-viewer"  # noqa: S105 - a test token, not a secret
FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("dicomweb")
    settings = Settings(
        data_dir=root / "rp", http_host="127.0.0.1", http_port=0,
        api_tokens={"viewer": TOKEN}, fsync=False, min_free_disk_mb=0,
    )  # fmt: skip
    db = Database(settings.effective_database_url)
    db.migrate()
    paths = [Path(str(get_testdata_file(name))) for name in FILES]
    assert ingest(settings, db, paths) == len(paths)
    server = WebServer(settings, db)
    server.start()
    base = f"http://127.0.0.1:{server.port}/dicomweb"
    client = DICOMwebClient(url=base, headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        yield {"client": client, "base": base, "paths": paths}
    finally:
        server.stop()
        db.dispose()


def _uid(item: dict[str, Any], tag: str) -> str:
    return str(item[tag]["Value"][0])


def test_qido_finds_studies_series_and_instances(served: dict[str, Any]) -> None:
    client: DICOMwebClient = served["client"]
    originals = [pydicom.dcmread(p, stop_before_pixels=True) for p in served["paths"]]
    studies = client.search_for_studies()
    assert {_uid(s, "0020000D") for s in studies} == {str(o.StudyInstanceUID) for o in originals}
    ct = originals[0]
    (one,) = client.search_for_studies(search_filters={"StudyInstanceUID": ct.StudyInstanceUID})
    assert one["00080061"]["Value"] == ["CT"]
    assert one["00201208"]["Value"] == [1]
    assert one["00100020"]["Value"] == [str(ct.PatientID)]
    assert client.search_for_studies(search_filters={"ModalitiesInStudy": "MR"})[0]["0020000D"][
        "Value"
    ] == [str(originals[1].StudyInstanceUID)]
    assert len(client.search_for_studies(limit=2)) == 2
    (series,) = client.search_for_series(ct.StudyInstanceUID)
    assert _uid(series, "0020000E") == str(ct.SeriesInstanceUID)
    (instance,) = client.search_for_instances(ct.StudyInstanceUID, ct.SeriesInstanceUID)
    assert _uid(instance, "00080018") == str(ct.SOPInstanceUID)
    assert _uid(instance, "00080016") == str(ct.SOPClassUID)


def test_wado_returns_the_archived_files_byte_for_byte(served: dict[str, Any]) -> None:
    client: DICOMwebClient = served["client"]
    for path in served["paths"]:
        original = pydicom.dcmread(path)
        got = client.retrieve_instance(
            original.StudyInstanceUID, original.SeriesInstanceUID, original.SOPInstanceUID
        )
        assert got.SOPInstanceUID == original.SOPInstanceUID
        assert got.PixelData == original.PixelData  # compressed data untouched
        assert got.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    ct = pydicom.dcmread(served["paths"][0])
    url = (f"{served['base']}/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}"
           f"/instances/{ct.SOPInstanceUID}")  # fmt: skip
    raw = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert raw.headers["content-type"].startswith('multipart/related; type="application/dicom"')
    assert served["paths"][0].read_bytes() in raw.content  # the archived bytes, as sent
    (whole,) = client.retrieve_study(ct.StudyInstanceUID)
    assert whole.SOPInstanceUID == ct.SOPInstanceUID
    (meta,) = client.retrieve_study_metadata(ct.StudyInstanceUID)
    assert meta["00080018"]["Value"] == [str(ct.SOPInstanceUID)]
    assert "7FE00010" not in meta  # no pixel data in the metadata


def test_dicomweb_needs_sign_in_and_names_what_is_missing(served: dict[str, Any]) -> None:
    base = served["base"]
    assert requests.get(f"{base}/studies", timeout=30).status_code == 401
    headers = {"Authorization": f"Bearer {TOKEN}"}
    missing = requests.get(f"{base}/studies/1.2.3.4/series", headers=headers, timeout=30)
    assert missing.status_code == 404
    assert "Study Instance UID" in missing.json()["detail"]
    bad = requests.get(f"{base}/studies", params={"limit": "0"}, headers=headers, timeout=30)
    assert bad.status_code == 422
    ct = pydicom.dcmread(served["paths"][0], stop_before_pixels=True)
    wrong = requests.get(f"{base}/studies/{ct.StudyInstanceUID}/series/9.9.9", headers=headers,
                         timeout=30)  # fmt: skip
    assert wrong.status_code == 404


def _expected(ds: pydicom.Dataset, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2 linear window of the rescaled values, to 8 bits (by hand)."""
    values = ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1)) + float(
        ds.get("RescaleIntercept", 0)
    )
    unit = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        unit = 1 - unit
    return np.rint(unit * 255).astype(np.uint8)


def test_rendered_frames_are_windowed_as_asked(served: dict[str, Any]) -> None:
    client: DICOMwebClient = served["client"]
    ct = pydicom.dcmread(served["paths"][0])
    png = client.retrieve_instance_rendered(
        ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID,
        media_types=("image/png",), params={"window": "40,400,linear"},
    )  # fmt: skip
    picture = np.asarray(Image.open(BytesIO(png)))
    assert picture.shape == (ct.Rows, ct.Columns)
    assert np.array_equal(picture, _expected(ct, 40, 400))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = (f"{served['base']}/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}"
           f"/instances/{ct.SOPInstanceUID}")  # fmt: skip
    jpeg = requests.get(f"{url}/frames/1/rendered", headers={**headers, "Accept": "image/jpeg"},
                        timeout=30)  # fmt: skip
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert Image.open(BytesIO(jpeg.content)).size == (ct.Columns, ct.Rows)
    assert requests.get(f"{url}/frames/2/rendered", headers=headers, timeout=30).status_code == 404
    bad = requests.get(f"{url}/rendered", params={"window": "40"}, headers=headers, timeout=30)
    assert bad.status_code == 422


def test_monochrome1_renders_inverted(served: dict[str, Any]) -> None:
    ds = pydicom.dcmread(served["paths"][0])
    normal = _expected(ds, 40, 400)
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = _expected(ds, 40, 400)
    assert np.array_equal(inverted, 255 - normal)
    from radpilot.web.rendering import render_frame

    assert np.array_equal(render_frame(ds, 1, (40, 400)), inverted)
