"""The receiver's tuned pynetdicom acceptor (radpilot.dicom.acceptor)."""

from __future__ import annotations

import copy
import io
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_STORE_RQ, C_STORE_RSP, DIMSEMessage
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    MRImageStorage,
    Verification,
)

from radpilot.core.settings import load_settings
from radpilot.dicom.acceptor import (
    AdaptiveDUL,
    BulkReadSocket,
    LowLatencyAssociation,
    SupportedContexts,
    WaitingDIMSEProvider,
    handler_class,
)
from radpilot.dicom.inbound import Part10Buffer, received_file
from radpilot.dicom.intake import Intake
from radpilot.dicom.pdata import MalformedPDUError, parse_items, read_pdata
from radpilot.dicom.requestor import ResponseKeepingDIMSEProvider
from radpilot.dicom.scp import Receiver
from radpilot.dicom.store_response import encode_store_response
from radpilot.dicom.writing import part10_header
from radpilot.store import Archive, Database
from tests import dcmtk


def _bulk_socket(sock: socket.socket) -> BulkReadSocket:
    wrapper = BulkReadSocket.__new__(BulkReadSocket)
    wrapper.socket = sock
    return wrapper


def test_bulk_read_socket_reads_exactly_what_was_asked_across_partial_sends() -> None:
    left, right = socket.socketpair()
    payload = bytes(range(256)) * 4096  # 1 MiB, more than one read chunk
    try:

        def send_in_pieces() -> None:
            for start in range(0, len(payload), 70_001):
                right.sendall(payload[start : start + 70_001])
                time.sleep(0.001)
            right.sendall(b"next")

        sender = threading.Thread(target=send_in_pieces)
        sender.start()
        reader = _bulk_socket(left)
        got = reader.recv(len(payload))
        sender.join()
        assert bytes(got) == payload
        assert bytes(reader.recv(4)) == b"next"  # nothing read beyond the request
    finally:
        left.close()
        right.close()


def test_bulk_read_socket_returns_a_short_read_when_the_peer_closes() -> None:
    left, right = socket.socketpair()
    try:
        right.sendall(b"only ten b")
        right.close()
        got = _bulk_socket(left).recv(1000)
        assert bytes(got) == b"only ten b"
    finally:
        left.close()


def test_waiting_provider_serves_a_message_that_arrives_during_the_poll() -> None:
    provider = DIMSEServiceProvider.__new__(DIMSEServiceProvider)
    provider.__class__ = WaitingDIMSEProvider
    import queue

    provider.msg_queue = queue.Queue()
    assert isinstance(provider, WaitingDIMSEProvider)
    provider.message_wait = 0.5
    threading.Timer(0.05, provider.msg_queue.put, args=((1, "message"),)).start()
    started = time.monotonic()
    assert provider.get_msg(block=False) == (1, "message")
    assert time.monotonic() - started < 0.45  # woke on arrival, not at the end of the wait
    provider.message_wait = 0.01
    assert provider.get_msg(block=False) == (None, None)


def test_adaptive_dul_polls_fast_only_while_data_flows() -> None:
    dul = DULServiceProvider.__new__(DULServiceProvider)
    dul.__class__ = AdaptiveDUL
    assert isinstance(dul, AdaptiveDUL)
    dul.busy_delay, dul.busy_window = 0.0002, 0.05
    dul._run_loop_delay = 0.001  # what pynetdicom's __init__ assigns: the idle delay
    assert dul._run_loop_delay == 0.001  # nothing happened yet
    dul._last_activity = time.monotonic()
    assert dul._run_loop_delay == 0.0002
    dul._last_activity = time.monotonic() - 0.06
    assert dul._run_loop_delay == 0.001


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    settings = load_settings(
        data_dir=tmp_path / "data",
        dicom_port=0,
        dicom_host="127.0.0.1",
        fsync=False,
        min_free_disk_mb=0,
        dicom_poll_delay=0.0003,
    )
    db = Database(f"sqlite:///{tmp_path / 'index.db'}")
    db.migrate()
    intake = Intake(db, Archive(tmp_path / "archive", fsync=False))
    intake.start()
    rx = Receiver(settings, intake)
    rx.start()
    yield rx
    rx.stop()
    intake.stop()


def test_the_receiver_serves_associations_with_the_tuned_parts(receiver: Receiver) -> None:
    seen: dict[str, Any] = {}

    def on_echo(event: evt.Event) -> int:
        dul = event.assoc.dul
        raw = dul.socket.socket
        seen.update(
            dul=type(dul),
            busy_delay=dul.busy_delay,
            socket=type(dul.socket),
            dimse=type(event.assoc.dimse),
            association=type(event.assoc),
            contexts=type(server.contexts),
            nodelay=raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
        )
        return 0x0000

    receiver.ae.add_supported_context(Verification)
    server = receiver._server
    assert server is not None
    server.bind(evt.EVT_C_ECHO, on_echo)
    assert dcmtk.echoscu(receiver.port)
    assert seen == {
        "dul": AdaptiveDUL,
        "busy_delay": 0.0003,
        "socket": BulkReadSocket,
        "dimse": WaitingDIMSEProvider,
        "association": LowLatencyAssociation,
        "contexts": SupportedContexts,
        "nodelay": 1,
    }


def test_a_tuned_server_talks_to_a_plain_pynetdicom_requestor() -> None:
    scp = AE("TUNED")
    scp.add_supported_context(Verification)
    server = scp.make_server(("127.0.0.1", 0), request_handler=handler_class(poll_delay=0.0002))
    scp._servers.append(server)  # as AE.start_server does, so that shutdown() finds it
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        scu = AE("PLAIN")
        scu.add_requested_context(Verification)
        assoc = scu.associate("127.0.0.1", server.server_address[1], ae_title="TUNED")
        assert assoc.is_established
        statuses = [assoc.send_c_echo().Status for _ in range(20)]
        assoc.release()
        assert statuses == [0x0000] * 20
        assert assoc.is_released
    finally:
        server.shutdown()


def test_supported_contexts_copy_per_association_like_a_deep_copy() -> None:
    ae = AE("X")
    ae.add_supported_context(Verification)
    ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.add_supported_context(MRImageStorage, scu_role=True, scp_role=True)
    original = SupportedContexts(ae.supported_contexts)
    copied = copy.deepcopy(original)
    reference = copy.deepcopy(list(original))  # what pynetdicom's deep copy gives
    assert type(copied) is list
    assert [str(c) for c in copied] == [str(c) for c in reference]
    assert [(c.scu_role, c.scp_role) for c in copied] == [
        (c.scu_role, c.scp_role) for c in reference
    ]
    for mine, theirs in zip(copied, original, strict=True):
        assert mine is not theirs
        assert mine.transfer_syntax is not theirs.transfer_syntax
    copied[1].transfer_syntax = [ExplicitVRLittleEndian]  # what one association does...
    copied[1].result = 0x00
    assert original[1].transfer_syntax == [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    assert original[1].result is None  # ...leaves the server's contexts alone


@pytest.mark.parametrize(
    ("status", "sop_instance"),
    [
        (0x0000, "1.2.3.4.5"),  # odd length: NUL-padded
        (0x0000, "1.2.826.0.1.3680043.8.498.10"),  # even length
        (0xA700, "1.2.3"),
        (0xC000, "1.2.840.10008.99.12345678901234567890123456789012345678901234567"),  # 64
        (0xB000, "9"),
    ],
)
def test_the_store_response_is_encoded_as_pynetdicom_encodes_it(
    status: int, sop_instance: str
) -> None:
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = 7
    primitive.AffectedSOPClassUID = CTImageStorage
    primitive.AffectedSOPInstanceUID = sop_instance
    primitive.Status = status
    message = C_STORE_RSP()
    message.primitive_to_message(primitive)
    (pdata,) = list(message.encode_msg(1, 16384))
    ((context_id, pdv),) = pdata.presentation_data_value_list
    assert context_id == 1 and pdv[:1] == b"\x03"
    assert encode_store_response(primitive) == pdv[1:]


def test_store_responses_with_comments_or_gaps_are_left_to_pynetdicom() -> None:
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = 7
    primitive.AffectedSOPClassUID = CTImageStorage
    primitive.AffectedSOPInstanceUID = "1.2.3"
    primitive.Status = 0xC000
    primitive.ErrorComment = "cannot understand"
    assert encode_store_response(primitive) is None
    primitive.ErrorComment = None
    primitive.AffectedSOPInstanceUID = None
    assert encode_store_response(primitive) is None
    request = C_STORE()  # a request, not a response
    request.MessageID = 1
    request.AffectedSOPClassUID = CTImageStorage
    request.AffectedSOPInstanceUID = "1.2.3"
    assert encode_store_response(request) is None


def test_storescu_gets_the_fast_responses_and_pynetdicom_the_logged_ones(
    receiver: Receiver, tmp_path: Path
) -> None:
    """dcmtk reads radpilot's own encoding; a listener on EVT_DIMSE_SENT still gets
    pynetdicom's message objects (the fast path steps aside)."""
    ct = Path(get_testdata_file("CT_small.dcm"))
    fast = dcmtk.storescu(receiver.port, [ct])
    assert fast.returncode == 0, fast.stderr
    assert "E:" not in fast.stdout + fast.stderr  # dcmtk's error lines
    sent: list[Any] = []
    server = receiver._server
    assert server is not None
    server.bind(evt.EVT_DIMSE_SENT, lambda event: sent.append(event.message))
    mr = Path(get_testdata_file("MR_small.dcm"))
    assert dcmtk.storescu(receiver.port, [mr]).returncode == 0
    assert [type(m).__name__ for m in sent] == ["C_STORE_RSP"]
    assert sent[0].command_set.Status == 0x0000
    assert receiver.intake.archive.contains(pydicom.dcmread(ct).SOPInstanceUID)
    assert receiver.intake.archive.contains(pydicom.dcmread(mr).SOPInstanceUID)


def _item(context_id: int, header: int, fragment: bytes) -> bytes:
    return struct.pack(">LB", len(fragment) + 2, context_id) + bytes([header]) + fragment


def test_pdata_items_are_views_of_the_one_buffer_with_pynetdicoms_reading() -> None:
    body = _item(1, 0x03, b"command") + _item(3, 0x00, b"data" * 1000) + _item(3, 0x02, b"end")
    fast = parse_items(memoryview(bytearray(body)))
    reference = P_DATA_TF()
    reference.decode(struct.pack(">BBL", 0x04, 0, len(body)) + body)
    expected = reference.to_primitive().presentation_data_value_list
    got = fast.to_primitive().presentation_data_value_list
    assert [(cid, bytes(data)) for cid, data in got] == [(cid, data) for cid, data in expected]
    assert all(isinstance(data, memoryview) for _, data in got)


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x00",  # a length field cut short
        struct.pack(">LB", 1, 1),  # an item without its control header
        struct.pack(">LBB", 50, 1, 0) + b"short",  # an item running past the PDU
    ],
)
def test_malformed_pdata_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedPDUError):
        parse_items(memoryview(bytearray(body)))


def test_read_pdata_reads_across_partial_sends_and_reports_a_close() -> None:
    left, right = socket.socketpair()
    try:
        payload = bytes(range(256)) * 2000
        sender = threading.Thread(
            target=lambda: [right.sendall(payload[i : i + 9_999]) for i in range(0, 512_000, 9_999)]
        )
        sender.start()
        got = read_pdata(left, len(payload))
        sender.join()
        assert got is not None and bytes(got) == payload
        right.sendall(b"abc")
        right.close()
        assert read_pdata(left, 10) is None  # the peer closed before 10 bytes came
    finally:
        left.close()


def test_a_malformed_pdata_pdu_aborts_the_association_and_the_server_serves_on(
    receiver: Receiver,
) -> None:
    scu = AE("RAW")
    scu.add_requested_context(Verification)
    assoc = scu.associate("127.0.0.1", receiver.port, ae_title="RADPILOT")
    assert assoc.is_established
    sock = assoc.dul.socket
    assert sock is not None and sock.socket is not None
    bad = struct.pack(">LB", 50, 1) + b"\x03short"  # an item longer than its PDU
    sock.socket.sendall(struct.pack(">BBL", 0x04, 0, len(bad)) + bad)
    deadline = time.monotonic() + 5
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.05)
    assert assoc.is_aborted  # radpilot aborted it (Evt19), as pynetdicom would
    assert dcmtk.echoscu(receiver.port)  # and still serves


def test_a_requestors_reactor_leaves_responses_for_the_waiting_sender() -> None:
    provider = DIMSEServiceProvider.__new__(DIMSEServiceProvider)
    provider.__class__ = ResponseKeepingDIMSEProvider
    import queue
    import types

    provider.msg_queue = queue.Queue()
    provider._assoc = types.SimpleNamespace(dimse_timeout=5)  # type: ignore[assignment]
    response = C_STORE()
    response.MessageIDBeingRespondedTo = 1
    response.Status = 0x0000
    provider.msg_queue.put((1, response))
    assert provider.get_msg(block=False) == (None, None)  # the reactor's look: left alone
    assert provider.get_msg(block=True) == (1, response)  # the sender's wait gets it
    request = C_ECHO()
    request.MessageID = 2
    request.AffectedSOPClassUID = Verification
    provider.msg_queue.put((1, request))
    assert provider.get_msg(block=False) == (1, request)  # requests still reach the reactor
    assert provider.get_msg(block=False) == (None, None)


def test_a_stored_data_set_is_received_into_its_part10_file(receiver: Receiver) -> None:
    seen: list[tuple[type, int]] = []

    def on_dimse_recv(event: evt.Event) -> None:
        buffer = event.message.data_set
        seen.append((type(buffer), getattr(buffer, "header_length", -1)))

    server = receiver._server
    assert server is not None
    server.bind(evt.EVT_DIMSE_RECV, on_dimse_recv)
    source = Path(str(get_testdata_file("CT_small.dcm")))
    original = pydicom.dcmread(source)
    assert dcmtk.storescu(receiver.port, [source]).returncode == 0
    assert receiver.intake.flush(timeout=30)

    header = part10_header(
        original.SOPClassUID,
        original.SOPInstanceUID,
        original.file_meta.TransferSyntaxUID,
        "STORESCU",
    )
    assert seen == [(Part10Buffer, len(header))]  # the one C-STORE request
    archive = receiver.intake.archive
    stored = archive.read_bytes(archive.relative_path(original.SOPInstanceUID))
    assert stored.startswith(header)
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(stored))
    assert ds.file_meta.SourceApplicationEntityTitle == "STORESCU"
    assert ds.PixelData == original.PixelData
    assert ds.SOPInstanceUID == original.SOPInstanceUID


def test_a_buffer_of_another_message_or_a_bad_command_holds_the_data_set_alone() -> None:
    assoc = Association(AE(), "acceptor")
    store = C_STORE_RQ()  # a C-STORE request on a context the association never accepted
    store.context_id = 7
    for message in (DIMSEMessage(), store):
        buffer = Part10Buffer(message, assoc)
        buffer.write(b"\x08\x00\x16\x00")
        assert buffer.header_length == 0 and buffer.getvalue() == b"\x08\x00\x16\x00"
        assert received_file(buffer) is None
    assert received_file(io.BytesIO(b"data")) is None
