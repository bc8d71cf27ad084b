"""The DICOM receiver against dcmtk's storescu/echoscu and storescp as reference."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.filereader import read_preamble
from sqlalchemy import func, select

from radpilot.core.events import STUDY_COMPLETE
from radpilot.core.settings import load_settings
from radpilot.pipeline.service import IntakeService
from radpilot.store.models import Instance, Receipt, ReceiptOutcome, Study
from tests import dcmtk
from tests.conftest import free_port, pydicom_data_files, shared_data


def dataset_part(data: bytes) -> bytes:
    """The bytes after preamble and file meta: what travelled over the network."""
    from io import BytesIO

    from pydicom.filereader import _read_file_meta_info

    fp = BytesIO(data)
    read_preamble(fp, force=False)
    _read_file_meta_info(fp)
    return data[fp.tell() :]


def start_service(tmp_path: Path, **overrides: object) -> IntakeService:
    settings = load_settings(
        data_dir=tmp_path / "data",
        dicom_port=0,
        dicom_host="127.0.0.1",
        fsync=False,
        min_free_disk_mb=0,
        **overrides,
    )
    service = IntakeService(settings)
    service.start()
    return service


@pytest.fixture
def service(tmp_path: Path) -> Iterator[IntakeService]:
    svc = start_service(tmp_path, study_quiet_seconds=0.5)
    yield svc
    svc.stop()


def test_echo(service: IntakeService) -> None:
    assert dcmtk.echoscu(service.receiver.port)
    assert not dcmtk.echoscu(free_port())  # and the check itself can fail


def test_pydicom_data_arrives_byte_identical_to_a_dcmtk_reference(
    service: IntakeService, tmp_path: Path
) -> None:
    files = pydicom_data_files() + sorted(shared_data("dcm_qa_ts", "In").iterdir())
    config, sendable = dcmtk.storescu_config(files, tmp_path / "storescu.cfg")
    reference = dcmtk.StoreSCP(tmp_path / "storescp", free_port())
    try:
        dcmtk.storescu(reference.port, sendable, config=config, called="STORESCP")
    finally:
        reference.stop()
    sent = dcmtk.storescu(service.receiver.port, sendable, config=config)
    assert service.intake.flush(timeout=60)

    expected = Counter(
        hashlib.sha256(dataset_part(p.read_bytes())).hexdigest()
        for p in (tmp_path / "storescp").iterdir()
    )
    assert sum(expected.values()) >= 60, sent.stderr[-2000:]

    archive = service.intake.archive
    with service.db.session() as session:
        receipts = session.scalars(select(Receipt)).all()
        instances = {i.sop_instance_uid: i for i in session.scalars(select(Instance))}
    got: Counter[str] = Counter()
    for receipt in receipts:
        if receipt.outcome is not ReceiptOutcome.REJECTED:
            assert receipt.stored_path is not None
            got[
                hashlib.sha256(dataset_part(archive.read_bytes(receipt.stored_path))).hexdigest()
            ] += 1
    # Every object dcmtk's own receiver got, bit for bit, radpilot holds bit for bit.
    assert got == expected
    rejected = [r for r in receipts if r.outcome is ReceiptOutcome.REJECTED]
    assert all(r.status and r.reason for r in rejected)
    # every stored instance is indexed, and its file matches the recorded hash
    stored = [r for r in receipts if r.outcome is ReceiptOutcome.STORED]
    assert {r.sop_instance_uid for r in stored} == set(instances)
    for instance in instances.values():
        data = archive.read_bytes(instance.file_path)
        assert hashlib.sha256(data).hexdigest() == instance.sha256
    assert not list((archive.root / "pending").iterdir())
    assert dcmtk.echoscu(service.receiver.port)  # still up


def test_calling_ae_allow_list(tmp_path: Path) -> None:
    svc = start_service(tmp_path, allowed_calling_aets=["MODALITY1"])
    try:
        file = sorted(shared_data("dcm_qa_ts", "In").iterdir())[0]
        config, files = dcmtk.storescu_config([file], tmp_path / "c.cfg")
        refused = dcmtk.storescu(svc.receiver.port, files, config=config, calling="STRANGER")
        assert refused.returncode != 0
        assert "Association Rejected" in refused.stderr or "rejected" in refused.stderr.lower()
        assert svc.intake.counters.stored == 0
        accepted = dcmtk.storescu(svc.receiver.port, files, config=config, calling="MODALITY1")
        assert accepted.returncode == 0, accepted.stderr
        assert svc.intake.flush(30)
        assert svc.intake.counters.stored == 1
    finally:
        svc.stop()


def test_host_allow_list_refuses_other_hosts(tmp_path: Path) -> None:
    svc = start_service(tmp_path, allowed_hosts=["10.99.0.0/16"])
    try:
        assert not dcmtk.echoscu(svc.receiver.port)
    finally:
        svc.stop()
    svc = start_service(tmp_path / "2", allowed_hosts=["127.0.0.0/8"])
    try:
        assert dcmtk.echoscu(svc.receiver.port)
    finally:
        svc.stop()


def test_concurrent_associations(service: IntakeService, tmp_path: Path) -> None:
    files = [p for p in pydicom_data_files() if p.stat().st_size < 2_000_000]
    config, sendable = dcmtk.storescu_config(files, tmp_path / "c.cfg")
    chunks = [sendable[i::4] for i in range(4)]
    errors: list[str] = []

    def send(chunk: list[Path]) -> None:
        errors.append(dcmtk.storescu(service.receiver.port, chunk, config=config).stderr)

    threads = [threading.Thread(target=send, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert service.intake.flush(60)
    # files dcmtk itself refuses to read never reach the receiver
    refused = sum(
        e.count("Bad DICOM file") + e.count("No SOP Class or Instance UID") for e in errors
    )
    counters = service.intake.counters
    handled = counters.stored + counters.duplicate + counters.conflict + counters.rejected
    assert len(errors) == 4
    assert handled == len(sendable) - refused
    assert "Store Failed" not in "".join(errors).replace("Bad DICOM file", "")
    with service.db.session() as session:
        uids = set(session.scalars(select(Instance.sop_instance_uid)))
        receipts = session.scalars(select(Receipt)).all()
    assert uids == {
        r.sop_instance_uid for r in receipts if r.outcome is not ReceiptOutcome.REJECTED
    }


def test_study_complete_is_announced_once_quiet(service: IntakeService, tmp_path: Path) -> None:
    announced: list[tuple[str, int]] = []
    service.bus.subscribe(
        STUDY_COMPLETE,
        lambda study_instance_uid, instances: announced.append((study_instance_uid, instances)),
    )
    files = sorted(shared_data("dcm_qa_ts", "In").iterdir())
    config, sendable = dcmtk.storescu_config(files, tmp_path / "c.cfg")
    dcmtk.storescu(service.receiver.port, sendable, config=config)
    assert service.intake.flush(30)
    deadline = time.monotonic() + 10
    while not announced and time.monotonic() < deadline:
        time.sleep(0.1)
    with service.db.session() as session:
        studies = session.scalars(select(Study)).all()
        counts = {
            s.study_instance_uid: session.scalar(
                select(func.count(Instance.id))
                .join(Instance.series)
                .where(Instance.series.has(study_pk=s.id))
            )
            for s in studies
        }
    assert dict(announced) == counts
    assert all(s.completed_at is not None for s in studies)


def test_inventory_json_matches_what_storescu_sent(service: IntakeService, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    import pydicom

    files = pydicom_data_files()
    config, sendable = dcmtk.storescu_config(files, tmp_path / "c.cfg")
    dcmtk.storescu(service.receiver.port, sendable, config=config)
    assert service.intake.flush(60)
    # what was sent and accepted, read independently from the files themselves
    with service.db.session() as session:
        accepted = {
            r.sop_instance_uid
            for r in session.scalars(select(Receipt))
            if r.outcome is ReceiptOutcome.STORED
        }
    expected: dict[str, set[object]] = {"modality": set(), "manufacturer": set(), "model": set()}
    seen: set[str] = set()
    for path in sendable:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        uid = str(ds.get("SOPInstanceUID", ""))
        if uid not in accepted or uid in seen:
            continue
        seen.add(uid)
        expected["modality"].add(ds.get("Modality") or None)
        expected["manufacturer"].add(str(ds.get("Manufacturer") or "").strip() or None)
        expected["model"].add(
            (
                str(ds.get("Manufacturer") or "").strip() or None,
                str(ds.get("ManufacturerModelName") or "").strip() or None,
            )
        )
    assert seen == accepted
    radpilot = str(Path(sys.executable).parent / "radpilot")
    out = subprocess.run(
        [radpilot, "--data-dir", str(service.settings.data_dir), "inventory", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(out.stdout)
    assert {r["modality"] for r in report["modalities"]} == expected["modality"]
    assert {r["manufacturer"] for r in report["manufacturers"]} == expected["manufacturer"]
    assert {(r["manufacturer"], r["model"]) for r in report["models"]} == expected["model"]
    assert report["totals"]["instances"] == len(accepted)
