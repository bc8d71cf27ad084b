"""Delivery through the outbox to real peers: Orthanc (C-STORE, STOW-RS) and a DICOM SCP.

Orthanc runs with a Lua ``ReceivedInstanceFilter`` that prints every arrival, duplicates
included (Orthanc itself files a resent instance as the same one, so its ``/instances``
alone could not tell "once" from "twice"); the tests count those lines.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import UID, generate_uid
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, _config, evt
from pynetdicom.dsutils import decode, split_dataset
from sqlalchemy import delete, select

from radpilot.core.settings import Destination, Settings, load_settings
from radpilot.governance.audit import AuditLog
from radpilot.results.outbox import DELIVERED, DELIVERY_FAILED, Outbox, enqueue, requeue_failed
from radpilot.results.senders import CStoreSender, Verdict
from radpilot.store import Database
from radpilot.store.models import Patient, Study
from radpilot.store.models_pipeline import (
    Delivery,
    DeliveryStatus,
    Job,
    ModelVersion,
    Result,
    ResultObject,
)
from tests.conftest import free_port, missing
from tests.orthanc import Orthanc

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
UNKNOWN_SOP_CLASS = "1.2.826.0.1.3680043.8.498.424242.1"  # no PACS knows it
LUA = """
function ReceivedInstanceFilter(dicom, origin, info)
  print("RADPILOT-ARRIVAL " .. dicom.SOPInstanceUID .. " " .. origin["RequestOrigin"])
  return true
end
"""


class Pacs(Orthanc):
    """Orthanc that keeps its ports and storage across :meth:`stop` / :meth:`start`."""

    def __init__(self, folder: Path, *, dicomweb: bool = False, running: bool = True) -> None:
        if dicomweb and not DICOMWEB_PLUGIN.exists():
            missing(f"{DICOMWEB_PLUGIN} is missing (apt-get install -y orthanc-dicomweb)")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "arrivals.lua").write_text(LUA)
        extra = {
            "Name": "radpilot-outbox-test",
            "LuaScripts": [str(folder / "arrivals.lua")],
            "Plugins": [str(DICOMWEB_PLUGIN)] if dicomweb else [],
            "DicomWeb": {"Enable": dicomweb, "Root": "/dicom-web/"},
        }
        super().__init__(folder, extra=extra, running=running)

    def kill(self) -> None:
        """Stop it the hard way (a crash, a power cut): open associations break."""
        self.process.kill()
        self.process.wait(timeout=20)
        self.log.close()

    def get_raw(self, path: str) -> bytes:
        """GET a REST resource as bytes (e.g. an instance's file)."""
        url = f"http://127.0.0.1:{self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=60) as response:
            return bytes(response.read())

    def arrivals(self) -> Counter[str]:
        """How many times each SOP Instance UID reached Orthanc (by any route)."""
        text = (self.folder / "orthanc.log").read_text(errors="replace")
        return Counter(
            line.split("RADPILOT-ARRIVAL ", 1)[1].split()[0]
            for line in text.splitlines()
            if "RADPILOT-ARRIVAL " in line
        )

    def stored(self) -> Counter[str]:
        """SOP Instance UIDs that Orthanc holds."""
        instances = self.get("/instances?expand")
        return Counter(i["MainDicomTags"]["SOPInstanceUID"] for i in instances)


def settings_for(tmp_path: Path, *destinations: Destination) -> Settings:
    return load_settings(
        data_dir=tmp_path / "rp",
        destinations=list(destinations),
        delivery_retry_seconds=5.0,
        delivery_retry_max_seconds=300.0,
        network_timeout=10.0,
    )


def dicom_node(name: str, port: int, **extra: object) -> Destination:
    return Destination.model_validate({"name": name, "ae_title": "ORTHANC", "port": port, **extra})


def fresh_copies(count: int, folder: Path, source: str = "CT_small.dcm") -> list[Path]:
    """``count`` copies of a pydicom test file, each a new instance (new UIDs)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        ds = pydicom.dcmread(get_testdata_file(source))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        paths.append(folder / f"{source}-{n}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def seed(db: Database, settings: Settings, files: list[Path], kind: str = "sr") -> list[int]:
    """Result objects (with patient, study, model, job and result rows) for ``files``."""
    results_dir = settings.data_dir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    tag = generate_uid()[-12:]
    with db.session() as session:
        patient = Patient(patient_id=f"OUTBOX-{tag}")
        study = Study(study_instance_uid=generate_uid(), patient=patient)
        model = ModelVersion(
            name=f"outbox-{tag}",
            version="1",
            task="classification",
            runtime="onnx",
            manifest={},
            weights_sha256="0" * 64,
            package_path="models/outbox/1",
            added_by="test",
            state_changed_by="test",
        )
        job = Job(study=study, model_version=model, source_key=tag, series_uids=[])
        result = Result(job=job, study=study, model_version=model, source_key=tag)
        objects = []
        for n, source in enumerate(files):
            target = results_dir / f"{tag}-{n}.dcm"
            shutil.copyfile(source, target)
            meta = pydicom.dcmread(target, stop_before_pixels=True)
            objects.append(
                ResultObject(
                    result=result,
                    kind=kind,
                    name=f"object-{n}",
                    sop_instance_uid=str(meta.SOPInstanceUID),
                    sop_class_uid=str(meta.SOPClassUID),
                    media_type="application/dicom",
                    path=str(target.relative_to(settings.data_dir)),
                    sha256=hashlib.sha256(target.read_bytes()).hexdigest(),
                )
            )
        session.add_all(objects)
        session.flush()
        for obj in objects:
            enqueue(session, obj, settings.destinations)
        return [obj.id for obj in objects]


def deliveries(db: Database) -> list[Delivery]:
    with db.session() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def uids_of(db: Database, ids: list[int]) -> list[str]:
    with db.session() as session:
        rows = session.scalars(select(ResultObject).where(ResultObject.id.in_(ids)))
        return sorted(str(o.sop_instance_uid) for o in rows)


def audit_entries(db: Database, kind: str) -> list[tuple[str, dict[str, object]]]:
    return [(e.subject, e.payload) for e in AuditLog(db).entries() if e.kind == kind]


def aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def test_enqueue_is_idempotent_and_follows_kinds(db: Database, tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        dicom_node("pacs", 104),
        dicom_node("seg-only", 105, kinds=["seg"]),
        dicom_node("archive", 106, kinds=["sr", "seg"]),
    )
    ids = seed(db, settings, fresh_copies(2, tmp_path / "src"), kind="sr")
    first = [(d.object_pk, d.destination) for d in deliveries(db)]
    assert sorted(first) == sorted((i, n) for i in ids for n in ("pacs", "archive"))
    with db.session() as session:
        obj = session.get(ResultObject, ids[0])
        assert obj is not None
        again = enqueue(session, obj, settings.destinations)
        assert [d.destination for d in again] == ["pacs", "archive"]
        assert all(d.status is DeliveryStatus.PENDING and d.attempts == 0 for d in again)
        obj.result.visible = False  # a shadow model's result is never sent
        session.flush()
        other = session.get(ResultObject, ids[1])
        assert other is not None
        session.execute(delete(Delivery).where(Delivery.object_pk == other.id))
        assert enqueue(session, other, settings.destinations) == []
    assert len(deliveries(db)) == 2  # nothing added; the shadow object's rows are gone


@pytest.mark.orthanc
def test_delivers_each_object_once_to_orthanc(db: Database, tmp_path: Path) -> None:
    pacs = Pacs(tmp_path / "orthanc")
    try:
        settings = settings_for(tmp_path, dicom_node("pacs", pacs.dicom_port))
        names = ["test-SR.dcm", "CT_small.dcm", "SC_rgb_rle.dcm", "JPEG2000.dcm", "MR_small.dcm"]
        ids = seed(db, settings, [Path(get_testdata_file(n)) for n in names])
        uids = uids_of(db, ids)
        outbox = Outbox(db, settings, poll_seconds=0.2)
        outbox.start()
        outbox.wake()
        deadline = time.monotonic() + 60
        while any(d.status is DeliveryStatus.PENDING for d in deliveries(db)):
            assert time.monotonic() < deadline, "the outbox did not deliver within 60 s"
            time.sleep(0.1)
        outbox.stop()
        rows = deliveries(db)
        assert all(d.status is DeliveryStatus.DELIVERED for d in rows)
        assert all(d.attempts == 1 and d.last_error is None for d in rows)
        assert all(
            d.delivered_at is not None and aware(d.delivered_at) >= aware(d.created_at)
            for d in rows
        )
        assert pacs.arrivals() == Counter(dict.fromkeys(uids, 1))
        assert pacs.stored() == Counter(dict.fromkeys(uids, 1))
        # Orthanc holds what we hold: every element, pixel data bit for bit (dcmtk may
        # re-encode undefined-length sequences, so bytes are compared element-wise).
        for instance in pacs.get("/instances"):
            received = pydicom.dcmread(BytesIO(pacs.get_raw(f"/instances/{instance}/file")))
            ours = next(o for o in objects(db) if o.sop_instance_uid == received.SOPInstanceUID)
            original = pydicom.dcmread(settings.data_dir / ours.path)
            assert received == original
            assert received.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        log = AuditLog(db)
        assert log.verify().ok
        entries = audit_entries(db, DELIVERED)
        assert sorted(subject for subject, _ in entries) == uids
        assert {p["destination"] for _, p in entries} == {"pacs"}
        assert sorted(p["object_id"] for _, p in entries) == sorted(ids)
        assert all(p["kind"] == "sr" and p["attempts"] == 1 for _, p in entries)
    finally:
        pacs.stop()


def objects(db: Database) -> list[ResultObject]:
    with db.session() as session:
        return list(session.scalars(select(ResultObject)))


# pynetdicom 3.0.4 does not close the socket of a refused connection (its shutdown() raises
# first); the garbage collector closes it with a ResourceWarning. Fixed upstream by
# https://github.com/pydicom/pynetdicom/pull/999 (issue #979).
@pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning")
@pytest.mark.orthanc
def test_a_stopped_pacs_delays_delivery_never_loses_it(db: Database, tmp_path: Path) -> None:
    pacs = Pacs(tmp_path / "orthanc", running=False)  # down when the results are ready
    settings = settings_for(tmp_path, dicom_node("pacs", pacs.dicom_port))
    ids = seed(db, settings, fresh_copies(4, tmp_path / "src"))
    outbox = Outbox(db, settings)
    t0 = dt.datetime.now(dt.UTC)
    report = outbox.deliver_due(now=t0)
    assert (report.claimed, report.retrying, report.delivered, report.failed) == (4, 4, 0, 0)
    for row in deliveries(db):
        assert row.status is DeliveryStatus.PENDING and row.attempts == 1
        assert aware(row.next_attempt_at) == t0 + dt.timedelta(seconds=5)
        assert row.last_error is not None and "no connection" in row.last_error
    assert outbox.deliver_due(now=t0 + dt.timedelta(seconds=4)).claimed == 0  # not yet due
    t1 = t0 + dt.timedelta(seconds=6)
    assert outbox.deliver_due(now=t1).retrying == 4  # still down: the backoff doubles
    assert {aware(r.next_attempt_at) for r in deliveries(db)} == {t1 + dt.timedelta(seconds=10)}
    pacs.start()
    try:
        t2 = t1 + dt.timedelta(seconds=11)
        assert outbox.deliver_due(now=t2).delivered == 4
        rows = deliveries(db)
        assert all(r.status is DeliveryStatus.DELIVERED and r.attempts == 3 for r in rows)
        assert all(aware(r.delivered_at or t0) == t2 for r in rows)
        assert outbox.deliver_due(now=t2 + dt.timedelta(hours=1)).claimed == 0
        uids = uids_of(db, ids)
        assert pacs.arrivals() == Counter(dict.fromkeys(uids, 1))
        assert [p["attempts"] for _, p in audit_entries(db, DELIVERED)] == [3] * 4
        assert AuditLog(db).verify().ok
    finally:
        pacs.stop()


@pytest.mark.slow
@pytest.mark.orthanc
def test_orthanc_stopped_during_delivery(db: Database, tmp_path: Path) -> None:
    """Orthanc dies in the middle of an association (a graceful stop would let the
    association finish first); after it restarts, everything arrives, once."""
    pacs = Pacs(tmp_path / "orthanc")
    try:
        settings = settings_for(tmp_path, dicom_node("pacs", pacs.dicom_port))
        ids = seed(db, settings, fresh_copies(60, tmp_path / "src", source="MR_small.dcm"))

        def stop_after_some() -> None:
            deadline = time.monotonic() + 30
            while sum(pacs.arrivals().values()) < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            pacs.kill()

        stopper = threading.Thread(target=stop_after_some)
        stopper.start()
        first = Outbox(db, settings).deliver_due()
        stopper.join()
        assert first.failed == 0 and first.retrying > 0 and first.delivered + first.retrying == 60
        pending = [r for r in deliveries(db) if r.status is DeliveryStatus.PENDING]
        assert len(pending) == first.retrying and all(r.last_error for r in pending)
        pacs.start()
        # The outbox's own retries: a restarted Orthanc on a loaded machine may still time
        # out a C-STORE, and that object is then due again at the next backoff.
        later, delivered = dt.datetime.now(dt.UTC), 0
        for _ in range(4):
            later += dt.timedelta(minutes=10)
            delivered += Outbox(db, settings).deliver_due(now=later).delivered
            if delivered == first.retrying:
                break
        assert delivered == first.retrying
        rows = deliveries(db)
        assert all(r.status is DeliveryStatus.DELIVERED for r in rows)
        uids = uids_of(db, ids)
        assert pacs.stored() == Counter(dict.fromkeys(uids, 1))
        arrivals = pacs.arrivals()
        assert set(arrivals) == set(uids)
        # An object reaches Orthanc at most once per attempt: only one whose C-STORE was
        # cut off (in flight when Orthanc died, or timed out) is sent, and may arrive, again.
        with db.session() as session:
            attempts = {
                str(o.sop_instance_uid): d.attempts
                for d, o in session.execute(
                    select(Delivery, ResultObject).join(
                        ResultObject, ResultObject.id == Delivery.object_pk
                    )
                )
            }
        assert all(arrivals[uid] <= attempts[uid] for uid in uids)
        assert sorted(s for s, _ in audit_entries(db, DELIVERED)) == uids
    finally:
        pacs.stop()


@pytest.mark.orthanc
def test_a_definitive_refusal_marks_the_row_failed(db: Database, tmp_path: Path) -> None:
    """Orthanc refuses a SOP class it does not know (presentation context result 3): the
    realistic case is a PACS without SEG support. The good objects still go."""
    pacs = Pacs(tmp_path / "orthanc")
    try:
        settings = settings_for(tmp_path, dicom_node("pacs", pacs.dicom_port))
        good, unknown, altered = fresh_copies(3, tmp_path / "src")
        ds = pydicom.dcmread(unknown)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UNKNOWN_SOP_CLASS
        ds.save_as(unknown, enforce_file_format=True)
        ids = seed(db, settings, [good, unknown, altered])
        with db.session() as session:
            changed = settings.data_dir / str(session.get(ResultObject, ids[2]).path)  # type: ignore[union-attr]
        changed.write_bytes(changed.read_bytes() + b"\0\0")  # altered after it was written
        report = Outbox(db, settings).deliver_due()
        assert (report.delivered, report.failed, report.retrying) == (1, 2, 0)
        rows = {r.object_pk: r for r in deliveries(db)}
        assert rows[ids[0]].status is DeliveryStatus.DELIVERED
        assert rows[ids[1]].status is DeliveryStatus.FAILED
        assert "SOP class not supported" in str(rows[ids[1]].last_error)
        assert rows[ids[2]].status is DeliveryStatus.FAILED
        assert "SHA-256" in str(rows[ids[2]].last_error)
        assert pacs.arrivals() == Counter(uids_of(db, ids[:1]))
        failed = audit_entries(db, DELIVERY_FAILED)
        assert sorted(s for s, _ in failed) == uids_of(db, ids[1:])
        assert all(p["reason"] and p["attempts"] == 1 for _, p in failed)
        assert (
            Outbox(db, settings)
            .deliver_due(now=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
            .claimed
            == 0
        )
    finally:
        pacs.stop()


def test_dimse_statuses_decide_retry_or_failure(db: Database, tmp_path: Path) -> None:
    """A pynetdicom SCP answers each instance with a chosen status (Orthanc 1.10 cannot)."""
    files = fresh_copies(5, tmp_path / "src")
    answers = [0x0000, 0xB000, 0xA700, 0xA900, 0xC000]
    by_uid = {
        str(pydicom.dcmread(f).SOPInstanceUID): s for f, s in zip(files, answers, strict=True)
    }
    seen: Counter[str] = Counter()

    def handle(event: evt.Event) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        seen[uid] += 1
        return by_uid[uid]

    ae = AE(ae_title="STATUS_SCP")
    ae.supported_contexts = StoragePresentationContexts
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, handle)]
    )
    try:
        node = Destination(name="scp", ae_title="STATUS_SCP", port=server.server_address[1])
        sender = CStoreSender(node, "RADPILOT", timeout=10)
        outcomes = sender.send(files)
        assert sender.nodelay is True  # TCP_NODELAY is on the association's socket
        expected = [
            Verdict.DELIVERED,
            Verdict.DELIVERED,
            Verdict.RETRY,
            Verdict.REFUSED,
            Verdict.REFUSED,
        ]
        assert [o.verdict for o in outcomes] == expected
        assert [o.status for o in outcomes] == answers
        settings = settings_for(tmp_path, node)
        ids = seed(db, settings, files)
        report = Outbox(db, settings).deliver_due()
        assert (report.delivered, report.retrying, report.failed) == (2, 1, 2)
        rows = {r.object_pk: r for r in deliveries(db)}
        states = [rows[i].status for i in ids]
        assert states == [
            DeliveryStatus.DELIVERED,
            DeliveryStatus.DELIVERED,
            DeliveryStatus.PENDING,
            DeliveryStatus.FAILED,
            DeliveryStatus.FAILED,
        ]
        assert rows[ids[0]].last_error is None
        assert str(rows[ids[1]].last_error).startswith("0xB000")  # a warning is kept
        assert str(rows[ids[2]].last_error).startswith("0xA700")
        assert str(rows[ids[3]].last_error).startswith("0xA900")
        assert [p["status"] for _, p in audit_entries(db, DELIVERY_FAILED)] == [0xA900, 0xC000]
        assert seen == Counter(dict.fromkeys(by_uid, 2))  # once by the sender, once by the outbox
        # The PACS is fixed; failed rows are requeued and go out (the 0xA700 one waits on).
        by_uid.update(dict.fromkeys(by_uid, 0x0000))
        with db.session() as session:
            assert requeue_failed(session, "elsewhere") == 0
            assert requeue_failed(session) == 2
        report = Outbox(db, settings).deliver_due()
        assert (report.claimed, report.delivered) == (2, 2)
        assert [r.status for r in deliveries(db)].count(DeliveryStatus.DELIVERED) == 4
        assert sorted(p["attempts"] for _, p in audit_entries(db, DELIVERED)) == [1, 1, 2, 2]
    finally:
        server.shutdown()


@pytest.mark.parametrize("raw", [False, True], ids=["dataset", "raw"])
def test_cstore_sends_what_the_file_holds(
    raw: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """By default pydicom reads and pynetdicom encodes; with pynetdicom's
    STORE_SEND_CHUNKED_DATASET on, the file's bytes go out untouched."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", raw)
    names = ["CT_small.dcm", "SC_rgb_rle.dcm", "JPEG2000.dcm", "test-SR.dcm"]
    files = [Path(get_testdata_file(n)) for n in names]
    received: dict[str, tuple[bytes, UID]] = {}

    def handle(event: evt.Event) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        received[uid] = (event.request.DataSet.getvalue(), event.context.transfer_syntax)
        return 0x0000

    ae = AE(ae_title="BYTES_SCP")
    for context in StoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, handle)]
    )
    try:
        node = Destination(name="scp", ae_title="BYTES_SCP", port=server.server_address[1])
        outcomes = CStoreSender(node, "RADPILOT", timeout=10).send(files)
    finally:
        server.shutdown()
    assert [o.verdict for o in outcomes] == [Verdict.DELIVERED] * len(files)
    for path in files:
        original = pydicom.dcmread(path)
        got, syntax = received[str(original.SOPInstanceUID)]
        assert decode(BytesIO(got), syntax.is_implicit_VR, syntax.is_little_endian) == original
        if raw:
            assert syntax == original.file_meta.TransferSyntaxUID
            _, offset = split_dataset(path)
            assert got == path.read_bytes()[offset:]


@pytest.mark.slow
@pytest.mark.orthanc
def test_two_outboxes_on_one_database_send_each_object_once(
    database_url: str, tmp_path: Path
) -> None:
    pacs = Pacs(tmp_path / "orthanc")
    first, second = Database(database_url), Database(database_url)
    try:
        first.migrate()
        settings = settings_for(tmp_path, dicom_node("pacs", pacs.dicom_port))
        ids = seed(first, settings, fresh_copies(24, tmp_path / "src"))
        outboxes = [Outbox(first, settings, batch_limit=3), Outbox(second, settings, batch_limit=3)]
        start = threading.Barrier(2)
        delivered = [0, 0]
        errors: list[BaseException] = []

        def drain(n: int) -> None:
            try:
                start.wait()
                while (report := outboxes[n].deliver_due()).claimed:
                    delivered[n] += report.delivered
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                errors.append(exc)

        threads = [threading.Thread(target=drain, args=(n,)) for n in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors
        assert sum(delivered) == 24
        assert all(
            r.status is DeliveryStatus.DELIVERED and r.attempts == 1 for r in deliveries(first)
        )
        uids = uids_of(first, ids)
        assert pacs.arrivals() == Counter(dict.fromkeys(uids, 1))
        entries = audit_entries(first, DELIVERED)
        assert sorted(s for s, _ in entries) == uids
        assert AuditLog(first).verify().ok
    finally:
        pacs.stop()
        first.dispose()
        second.dispose()


@pytest.mark.orthanc
def test_stow_rs_to_orthanc_dicomweb(db: Database, tmp_path: Path) -> None:
    pacs = Pacs(tmp_path / "orthanc", dicomweb=True)
    try:
        web = Destination(
            name="web", kind="stowrs", url=f"http://127.0.0.1:{pacs.http_port}/dicom-web"
        )
        down = Destination(
            name="down", kind="stowrs", url=f"http://127.0.0.1:{free_port()}/dicom-web"
        )
        settings = settings_for(tmp_path, web, down)
        names = ["test-SR.dcm", "CT_small.dcm", "SC_rgb_rle.dcm"]
        ids = seed(db, settings, [Path(get_testdata_file(n)) for n in names])
        report = Outbox(db, settings).deliver_due()
        assert (report.delivered, report.retrying, report.failed) == (3, 3, 0)
        rows = deliveries(db)
        assert {r.destination for r in rows if r.status is DeliveryStatus.DELIVERED} == {"web"}
        assert all("not reachable" in str(r.last_error) for r in rows if r.destination == "down")
        uids = uids_of(db, ids)
        assert pacs.arrivals() == Counter(dict.fromkeys(uids, 1))
        assert pacs.stored() == Counter(dict.fromkeys(uids, 1))
        assert sorted(s for s, _ in audit_entries(db, DELIVERED)) == uids
    finally:
        pacs.stop()
