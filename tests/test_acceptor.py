"""The receiver's tuned pynetdicom acceptor (radpilot.dicom.acceptor)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE, evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dul import DULServiceProvider
from pynetdicom.sop_class import Verification

from radpilot.core.settings import load_settings
from radpilot.dicom.acceptor import (
    AdaptiveDUL,
    BulkReadSocket,
    WaitingDIMSEProvider,
    handler_class,
)
from radpilot.dicom.intake import Intake
from radpilot.dicom.scp import Receiver
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
