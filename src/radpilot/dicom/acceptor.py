"""Lower per-message latency for pynetdicom's acceptor associations.

pynetdicom runs each association as two polling threads: the DUL thread reads PDUs and
sleeps ``_run_loop_delay`` (1 ms) whenever it finds nothing to do, and the association
thread sleeps 1 ms on every turn of its loop before it looks at the queue of decoded DIMSE
messages. A storage SCU such as dcmtk's ``storescu`` waits for each C-STORE response
before it sends the next image, so everything the receiver spends per image, sleeps,
copies and encodings included, is paid in series.

:class:`LowLatencyRequestHandler` keeps pynetdicom's protocol code and changes, on each
accepted association and through subclasses only (no module is patched):

- the DUL's poll delay (the tunable pynetdicom's maintainers describe for this trade-off,
  pynetdicom issue #650) is ``poll_delay`` seconds while data flows, and pynetdicom's 1 ms
  again once the association has been quiet for ``busy_window`` seconds, so an idle open
  association costs no more CPU than before (:class:`AdaptiveDUL`);
- P-DATA-TF bodies are read into one buffer and passed on as memoryviews
  (:mod:`radpilot.dicom.pdata`), other PDUs as pynetdicom reads them;
- the association thread *waits* on the message queue (up to ``message_wait`` seconds, a
  condition variable, no spinning) instead of sleeping 1 ms per turn and peeking
  (:class:`WaitingDIMSEProvider`, :class:`LowLatencyAssociation`);
- a C-STORE data set is received into the image of its Part 10 file
  (:mod:`radpilot.dicom.inbound`), and a plain C-STORE response is encoded by
  :mod:`radpilot.dicom.store_response`;
- the socket is read up to 256 KiB per call and ``TCP_NODELAY`` is set, so the small
  C-STORE response leaves without Nagle's delay (:class:`BulkReadSocket`).

:class:`SupportedContexts` makes the server's per-association copy of its presentation
contexts cheap. Tests in ``tests/test_acceptor.py`` check each part; ``bench/cstore.py``
measures the effect.
"""

from __future__ import annotations

import copy
import logging
import queue
import socket
import struct
import time
from typing import Any, ClassVar, cast

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import AssociationSocket, RequestHandler

from radpilot.dicom.inbound import Part10Buffer
from radpilot.dicom.pdata import MalformedPDUError, parse_items, read_pdata
from radpilot.dicom.store_response import encode_store_response

__all__ = [
    "AdaptiveDUL",
    "BulkReadSocket",
    "LowLatencyAssociation",
    "LowLatencyRequestHandler",
    "SupportedContexts",
    "WaitingDIMSEProvider",
    "handler_class",
]

log = logging.getLogger(__name__)

_READ_CHUNK = 256 * 1024  # bytes per recv(); a PDU's length is the peer's word, not ours
_BULK_MAX = 16 * 1024 * 1024  # when our maximum PDU size is unlimited (0)


class BulkReadSocket(AssociationSocket):
    """An :class:`AssociationSocket` that reads large chunks instead of 4 KiB at a time."""

    def recv(self, nr_bytes: int) -> bytearray:
        """Read ``nr_bytes`` from the socket; fewer only if the peer closed the connection.

        The buffer grows as data arrives (at most ``_READ_CHUNK`` per call), so a peer
        announcing a huge PDU cannot make radpilot allocate it up front.
        """
        sock = self.socket
        out = bytearray()
        if sock is None:
            return out
        while len(out) < nr_bytes:
            data = sock.recv(min(nr_bytes - len(out), _READ_CHUNK))
            if not data:  # connection closed: the caller sees a short read
                break
            out += data
        return out


class WaitingDIMSEProvider(DIMSEServiceProvider):
    """A DIMSE provider whose non-blocking ``get_msg`` waits briefly for a message."""

    message_wait: float = 0.005

    def get_msg(self, block: bool = False) -> Any:
        """The next decoded message, as pynetdicom's ``get_msg``.

        With ``block=False`` (the association reactor's poll) it waits up to
        ``message_wait`` seconds, so a message that arrives meanwhile is served at once
        rather than after the reactor's next sleep.
        """
        if block:
            return super().get_msg(block=True)
        try:
            return self.msg_queue.get(timeout=self.message_wait)
        except queue.Empty:
            return None, None

    def receive_primitive(self, primitive: P_DATA) -> None:
        """As pynetdicom's, with each new message's data set received into a
        :class:`~radpilot.dicom.inbound.Part10Buffer`."""
        if self.message is None:
            message = DIMSEMessage()
            message.data_set = Part10Buffer(message, self.assoc)
            self.message = message
        super().receive_primitive(primitive)

    def send_msg(self, primitive: Any, context_id: int) -> None:
        """Send a DIMSE message as pynetdicom does; a plain C-STORE response is encoded by
        :func:`~radpilot.dicom.store_response.encode_store_response` instead.

        The fast path is taken only when nobody listens for ``EVT_DIMSE_SENT`` (its
        handlers want pynetdicom's message object) and the command fits one PDU.
        """
        if type(primitive) is C_STORE and not self.assoc.get_handlers(evt.EVT_DIMSE_SENT):
            encoded = encode_store_response(primitive)
            limit = self.maximum_pdu_size
            if encoded is not None and (limit == 0 or len(encoded) + 6 <= limit):
                pdata = P_DATA()
                # 0x03: a command fragment, the last one (PS3.8 E.2)
                pdata.presentation_data_value_list.append((context_id, b"\x03" + encoded))
                self.dul.send_pdu(pdata)
                return
        super().send_msg(primitive, context_id)


class AdaptiveDUL(DULServiceProvider):
    """pynetdicom's DUL thread, polling every ``busy_delay`` seconds while data flows.

    pynetdicom sleeps ``_run_loop_delay`` whenever a loop found nothing to do; here that
    attribute is a property: ``busy_delay`` within ``busy_window`` seconds of the last PDU
    read or sent, ``idle_delay`` (pynetdicom's value) after that.
    """

    busy_delay: float = 0.0002
    busy_window: float = 0.05
    idle_delay: float = 0.001
    _last_activity: float = 0.0

    @property
    def _run_loop_delay(self) -> float:
        if time.monotonic() - self._last_activity < self.busy_window:
            return self.busy_delay
        return self.idle_delay

    @_run_loop_delay.setter
    def _run_loop_delay(self, value: float) -> None:
        self.idle_delay = value

    def _is_transport_event(self) -> bool:
        if super()._is_transport_event():
            self._last_activity = time.monotonic()
            return True
        return False

    def _process_recv_primitive(self) -> bool:
        if super()._process_recv_primitive():
            self._last_activity = time.monotonic()
            return True
        return False

    def _read_pdu_data(self) -> None:
        """pynetdicom's PDU read, with P-DATA-TF bodies read as :mod:`~radpilot.dicom.pdata`
        describes (once, into one buffer). Every other PDU, and every PDU while someone
        listens for ``EVT_DATA_RECV`` or ``EVT_PDU_RECV``, is decoded by pynetdicom; the
        events put on the state machine's queue are pynetdicom's (Evt10 for P-DATA, Evt17
        when the peer closes mid-PDU, Evt19 for a malformed one).
        """
        if self.assoc.get_handlers(evt.EVT_DATA_RECV) or self.assoc.get_handlers(evt.EVT_PDU_RECV):
            super()._read_pdu_data()
            return
        sock = self.socket
        try:
            header = bytes(sock.recv(6)) if sock is not None else b""
        except (OSError, TimeoutError):
            header = b""
        if len(header) < 6 or sock is None or sock.socket is None:
            self.event_queue.put("Evt17")  # transport closed
            return
        pdu_type, _, length = struct.unpack(">BBL", header)
        if not 0x01 <= pdu_type <= 0x07:
            log.error("unknown PDU type 0x%02X received", pdu_type)
            self.event_queue.put("Evt19")
            return
        if pdu_type == 0x04 and length <= self._bulk_limit():
            try:
                body = read_pdata(sock.socket, length)
            except (OSError, TimeoutError):
                body = None
            if body is None:
                self.event_queue.put("Evt17")
                return
            try:
                pdu: Any = parse_items(body)
            except MalformedPDUError as exc:
                log.error("malformed P-DATA-TF PDU received: %s", exc)
                self.event_queue.put("Evt19")
                return
            self.event_queue.put("Evt10")
            self._recv_pdu.put(pdu)
            return
        try:
            rest = sock.recv(length)
        except (OSError, TimeoutError):
            rest = bytearray()
        if len(rest) != length:
            self.event_queue.put("Evt17")
            return
        try:
            pdu, event = self._decode_pdu(bytearray(header) + rest)
        except Exception as exc:  # noqa: BLE001 - as pynetdicom: any decoding failure is Evt19
            log.error("unable to decode the received PDU (%s)", type(exc).__name__)
            self.event_queue.put("Evt19")
            return
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)

    def _bulk_limit(self) -> int:
        """The largest P-DATA body read into one buffer up front: our maximum PDU size.

        A larger announced length (a peer breaking the negotiated maximum) goes through
        pynetdicom's read, which grows its buffer as data arrives.
        """
        maximum = int(self.assoc.acceptor.maximum_length or 0)
        return maximum if 0 < maximum <= _BULK_MAX else _BULK_MAX


class LowLatencyAssociation(Association):
    """pynetdicom's acceptor association without the fixed 1 ms sleep per reactor turn.

    pynetdicom's ``Association._run_reactor`` sleeps 1 ms at the top of every turn, after
    a served request too, before it looks for the next one. Here the turn's pace comes
    from :class:`WaitingDIMSEProvider` instead: the look for the next message *waits* for
    it (up to ``message_wait``, woken by its arrival), so a request is served as soon as
    it is decoded and an idle association still turns at most 1/``message_wait`` times a
    second. Everything else in the turn is pynetdicom's, in pynetdicom's order: the pause
    checkpoint, serving a request, the peer's release, an abort, the DUL thread's death,
    the network timeout.
    """

    def _run_reactor(self) -> None:
        self._is_paused = False
        while not self._kill:
            if not isinstance(self.dimse, WaitingDIMSEProvider):
                time.sleep(0.001)  # nothing else paces the loop
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False

            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._serve_request(msg, cast(int, context_id))
            if self._handled_end_of_association():
                return

    def _handled_end_of_association(self) -> bool:
        """Release, abort, a dead DUL or the network timeout, as pynetdicom handles them."""
        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            log.info("Association Released")
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return True
        if self.acse.is_aborted():
            log.info(
                "Association Aborted%s", " (A-P-ABORT)" if self.acse.is_aborted("a-p-abort") else ""
            )
            self.dul.receive_pdu(wait=False)  # so that EVT_ACSE_RECV fires for subscribers
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return True
        if not self.dul.is_alive():
            self.kill()
            return True
        if self.dul.idle_timer_expired():
            log.error("Network timeout reached")
            if self.network_timeout_response == "A-RELEASE":
                self._is_paused = True
                self._reactor_checkpoint.wait()
                self.release()
                self._is_paused = False
            else:
                self.abort()
            self.kill()
            return True
        return False


class SupportedContexts(list[PresentationContext]):
    """The server's supported presentation contexts, cheap to copy per association.

    pynetdicom gives each accepted association ``copy.deepcopy`` of the server's contexts.
    radpilot supports every storage SOP class in every transfer syntax (206 contexts,
    9,270 transfer syntax UIDs), and that deep copy took 50-60 ms of CPU per association
    here, more than the whole negotiation. A context holds strings (UIDs, immutable) and
    flags, so a copy of each context with its own transfer syntax list is as independent
    as the deep copy; negotiation only reads them.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> list[PresentationContext]:
        out: list[PresentationContext] = []
        for context in self:
            twin = copy.copy(context)
            twin._transfer_syntax = list(context._transfer_syntax)
            out.append(twin)
        return out


class LowLatencyRequestHandler(RequestHandler):
    """pynetdicom's request handler with the acceptor tuned as the module describes.

    ``poll_delay`` and ``message_wait`` are class attributes, set per server by
    :func:`handler_class`.
    """

    poll_delay: ClassVar[float] = 0.0002
    message_wait: ClassVar[float] = 0.005

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        tune(assoc, poll_delay=self.poll_delay, message_wait=self.message_wait)
        return assoc


def tune(assoc: Association, *, poll_delay: float, message_wait: float) -> None:
    """Apply the changes to an association that has its socket but has not started."""
    if type(assoc) is Association:
        assoc.__class__ = LowLatencyAssociation
    if type(assoc.dul) is DULServiceProvider:
        assoc.dul.__class__ = AdaptiveDUL
        assoc.dul.busy_delay = poll_delay  # type: ignore[attr-defined]
    sock = assoc.dul.socket
    if sock is not None and type(sock) is AssociationSocket:
        sock.__class__ = BulkReadSocket
        raw = sock.socket
        if raw is not None and raw.family in (socket.AF_INET, socket.AF_INET6):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if type(assoc.dimse) is DIMSEServiceProvider:
        assoc.dimse.__class__ = WaitingDIMSEProvider
        assoc.dimse.message_wait = message_wait  # type: ignore[attr-defined]


def handler_class(*, poll_delay: float, message_wait: float = 0.005) -> type[RequestHandler]:
    """A :class:`LowLatencyRequestHandler` subclass with these settings."""
    return type(
        "RadpilotRequestHandler",
        (LowLatencyRequestHandler,),
        {"poll_delay": poll_delay, "message_wait": message_wait},
    )
