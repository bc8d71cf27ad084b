"""A real PACS (Orthanc) pushes studies to radpilot by C-STORE."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pydicom
from sqlalchemy import select

from radpilot.core.settings import load_settings
from radpilot.pipeline.service import IntakeService
from radpilot.store.models import Instance
from tests.conftest import pydicom_data_files
from tests.orthanc import Orthanc


def test_orthanc_pushes_studies_to_radpilot(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path / "rp",
        dicom_port=0,
        dicom_host="127.0.0.1",
        fsync=False,
        min_free_disk_mb=0,
        allowed_calling_aets=["ORTHANC"],
    )
    service = IntakeService(settings)
    service.start()
    pacs = Orthanc(
        tmp_path / "orthanc", {"radpilot": ["RADPILOT", "127.0.0.1", service.receiver.port]}
    )
    try:
        uploaded: dict[str, Path] = {}
        for path in pydicom_data_files():
            raw = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            if raw.get_item(0x00080016) is None or raw.get_item(0x00080016).VR == "UN":
                # Orthanc 1.10 reads a UN-encoded SOP Class UID as "31" and proposes that
                # as abstract syntax, which every SCP (storescp too) must refuse.
                continue
            try:
                answer = pacs.post("/instances", path.read_bytes())
            except OSError:
                continue  # Orthanc refuses some broken files; they are not pushed
            if isinstance(answer, dict) and answer.get("Status") == "Success":
                uid = str(pydicom.dcmread(path, stop_before_pixels=True, force=True).SOPInstanceUID)
                uploaded.setdefault(uid, path)
        studies = pacs.get("/studies")
        assert len(uploaded) > 20 and studies
        for study in studies:
            job = pacs.post(
                "/modalities/radpilot/store",
                json.dumps({"Resources": [study], "Synchronous": True}).encode(),
            )
            assert job["FailedInstancesCount"] == 0
        assert service.intake.flush(60)
        with service.db.session() as session:
            received = {i.sop_instance_uid: i for i in session.scalars(select(Instance))}
        assert set(received) == set(uploaded)
        compared = 0
        for uid, instance in received.items():
            ours = pydicom.dcmread(service.intake.archive.path(instance.file_path))
            original = pydicom.dcmread(uploaded[uid], force=True)
            assert ours.SOPInstanceUID == original.SOPInstanceUID
            same_encoding = ours.file_meta.TransferSyntaxUID == original.file_meta.get(
                "TransferSyntaxUID"
            )
            if "PixelData" in original and same_encoding:
                compared += 1
                assert (
                    hashlib.sha256(ours.PixelData).digest()
                    == hashlib.sha256(original.PixelData).digest()
                )
            assert instance.calling_ae_title == "ORTHANC"
        assert compared > 20  # Orthanc forwards as stored: pixel data compared bit for bit
    finally:
        pacs.stop()
        service.stop()
