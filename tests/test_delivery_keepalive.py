"""The C-STORE sender keeps its association for the next batch (delivery keepalive)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.association import Association
from pynetdicom.transport import ThreadedAssociationServer

from radpilot.core.settings import Destination
from radpilot.results.outbox import Outbox
from radpilot.results.senders import CStoreSender, Verdict
from radpilot.store import Database
from radpilot.store.models_pipeline import DeliveryStatus
from tests.test_outbox import deliveries, fresh_copies, seed, settings_for


@dataclass
class Peer:
    """A pynetdicom storage SCP that counts associations and received instances."""

    server: ThreadedAssociationServer
    accepted: list[Association] = field(default_factory=list)
    released: int = 0
    received: list[str] = field(default_factory=list)

    @property
    def node(self) -> Destination:
        return Destination(name="peer", ae_title="KEEP_SCP", port=self.server.server_address[1])


@pytest.fixture
def peer() -> Iterator[Peer]:
    ae = AE(ae_title="KEEP_SCP")
    ae.supported_contexts = StoragePresentationContexts
    holder: list[Peer] = []

    def on_store(event: evt.Event) -> int:
        holder[0].received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def on_accepted(event: evt.Event) -> None:
        holder[0].accepted.append(event.assoc)

    def on_released(event: evt.Event) -> None:
        holder[0].released += 1

    server = ae.start_server(
        ("127.0.0.1", 0),
        block=False,
        evt_handlers=[
            (evt.EVT_C_STORE, on_store),
            (evt.EVT_ACCEPTED, on_accepted),
            (evt.EVT_RELEASED, on_released),
        ],
    )
    holder.append(Peer(server))
    yield holder[0]
    server.shutdown()


def _uids(paths: list[Path]) -> list[str]:
    return [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]


def _wait(condition: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.02)
    return False


def test_the_next_batch_goes_over_the_kept_association(peer: Peer, tmp_path: Path) -> None:
    files = fresh_copies(3, tmp_path / "ct")
    sender = CStoreSender(peer.node, "RADPILOT", timeout=10, keepalive=5)
    for path in files:
        assert [o.verdict for o in sender.send([path])] == [Verdict.DELIVERED]
    assert sender.opened == 1
    assert len(peer.accepted) == 1
    assert peer.received == _uids(files)
    sender.close()
    assert _wait(lambda: peer.released == 1)


def test_an_object_the_kept_association_cannot_carry_gets_a_new_one(
    peer: Peer, tmp_path: Path
) -> None:
    ct = fresh_copies(1, tmp_path / "ct")
    mr = fresh_copies(1, tmp_path / "mr", source="MR_small.dcm")
    sender = CStoreSender(peer.node, "RADPILOT", timeout=10, keepalive=5)
    assert sender.send(ct)[0].verdict is Verdict.DELIVERED
    assert sender.send(mr)[0].verdict is Verdict.DELIVERED  # no MR context on the first
    assert sender.opened == 2
    assert _wait(lambda: peer.released == 1)  # the first was released, not left open
    # The kept (second) association proposed MR and the result classes, not CT.
    assert [o.verdict for o in sender.send(mr + ct)] == [Verdict.DELIVERED] * 2
    assert sender.opened == 3
    sender.close()
    assert peer.received == _uids(ct + mr + mr + ct)


def test_results_of_every_kind_share_the_kept_association(peer: Peer, tmp_path: Path) -> None:
    """An SR, then its key image (secondary capture), then the next study's SR: radpilot's
    result classes are proposed up front, so one association carries them all."""
    sr = fresh_copies(2, tmp_path / "sr", source="test-SR.dcm")
    sc = fresh_copies(1, tmp_path / "sc", source="SC_rgb.dcm")
    sender = CStoreSender(peer.node, "RADPILOT", timeout=10, keepalive=5)
    for batch in ([sr[0]], sc, [sr[1]]):
        assert sender.send(batch)[0].verdict is Verdict.DELIVERED
    assert sender.opened == 1
    sender.close()
    assert peer.received == _uids([sr[0], *sc, sr[1]])


def test_keepalive_ends_and_zero_means_a_new_association_each_time(
    peer: Peer, tmp_path: Path
) -> None:
    files = fresh_copies(2, tmp_path / "ct")
    short = CStoreSender(peer.node, "RADPILOT", timeout=10, keepalive=0.2)
    short.send(files[:1])
    time.sleep(0.4)
    short.send(files[1:])
    assert short.opened == 2
    short.close()
    never = CStoreSender(peer.node, "RADPILOT", timeout=10)
    never.send(files[:1])
    never.send(files[1:])
    assert never.opened == 2
    assert _wait(lambda: peer.released == 4)


def test_an_association_the_peer_closed_is_replaced(peer: Peer, tmp_path: Path) -> None:
    files = fresh_copies(4, tmp_path / "ct")
    sender = CStoreSender(peer.node, "RADPILOT", timeout=10, keepalive=5)
    assert sender.send(files[:1])[0].verdict is Verdict.DELIVERED
    peer.accepted[0].abort()  # the PACS drops the idle association
    # Sent at once, the batch may still find the old association looking alive and lose
    # its first object; either way it must go out on a new association.
    outcomes = sender.send(files[1:])
    assert [o.verdict for o in outcomes] == [Verdict.DELIVERED] * 3
    assert sender.opened == 2
    sender.close()
    assert sorted(set(peer.received)) == sorted(_uids(files))


@pytest.mark.orthanc
def test_the_kept_association_reaches_orthanc(tmp_path: Path) -> None:
    from tests.orthanc import Orthanc

    pacs = Orthanc(tmp_path / "orthanc")
    try:
        node = Destination(name="pacs", ae_title="ORTHANC", port=pacs.dicom_port)
        sender = CStoreSender(node, "RADPILOT", timeout=10, keepalive=5)
        files = fresh_copies(3, tmp_path / "sr", source="test-SR.dcm")
        for path in files:
            assert sender.send([path])[0].verdict is Verdict.DELIVERED
        sender.close()
        assert sender.opened == 1
        assert sorted(pacs.sop_instance_uids()) == sorted(_uids(files))
    finally:
        pacs.stop()


def test_pydicom_test_sr_is_an_sr() -> None:
    # The tests above rely on test-SR.dcm being of another SOP class than CT_small.dcm.
    sr = pydicom.dcmread(get_testdata_file("test-SR.dcm"), stop_before_pixels=True)
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    assert sr.SOPClassUID != ct.SOPClassUID


def test_the_outbox_thread_sends_successive_results_over_one_association(
    peer: Peer, db: Database, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, peer.node).model_copy(
        update={"delivery_keepalive_seconds": 3.0}
    )
    outbox = Outbox(db, settings, poll_seconds=0.2)
    outbox.start()
    try:
        first = fresh_copies(1, tmp_path / "a", source="test-SR.dcm")
        seed(db, settings, first)
        outbox.wake()
        assert _wait(lambda: len(peer.received) == 1)
        second = fresh_copies(1, tmp_path / "b", source="test-SR.dcm")
        seed(db, settings, second)
        outbox.wake()
        assert _wait(lambda: len(peer.received) == 2)
        assert len(peer.accepted) == 1
        assert peer.released == 0  # still kept for the next result
        # Nothing more to send: the thread releases it once the keepalive is over.
        assert _wait(lambda: peer.released == 1, timeout=8.0)
    finally:
        outbox.stop()
    assert peer.received == _uids(first + second)
    assert [d.status for d in deliveries(db)] == [DeliveryStatus.DELIVERED] * 2
