"""Lower per-message latency for pynetdicom's acceptor associations.

pynetdicom runs each association as two polling threads: the DUL thread reads PDUs and
sleeps ``_run_loop_delay`` (1 ms) whenever it finds nothing to do, and the association
thread sleeps 1 ms before each look at the queue of decoded DIMSE messages. A storage SCU
such as dcmtk's ``storescu`` waits for each C-STORE response before it sends the next
image, so these sleeps add up to 1.5-3 ms to every image, a third of the time a 0.5 MB CT
slice takes here. The socket is read 4 KiB per ``recv`` call, 32 calls per 128 KiB PDU.

:class:`LowLatencyRequestHandler` keeps pynetdicom's protocol code and changes three
things on each accepted association, all through subclasses (no module is patched):

- the DUL's poll delay (the tunable pynetdicom's maintainers describe for this trade-off,
  pynetdicom issue #650) is ``poll_delay`` seconds while data flows, and pynetdicom's 1 ms
  again once the association has been quiet for ``busy_window`` seconds, so an idle open
  association costs no more CPU than before;
- the association thread *waits* on the message queue (up to ``message_wait`` seconds, a
  condition variable, no spinning) instead of only peeking after its 1 ms sleep, so a
  decoded request is served at once;
- the socket is read up to 256 KiB per call and ``TCP_NODELAY`` is set, so the small
  C-STORE response leaves without Nagle's delay.

Tests in ``tests/test_acceptor.py`` check each part; ``bench/cstore.py`` measures the effect.
"""

from __future__ import annotations

import queue
import socket
import time
from typing import Any, ClassVar

from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import AssociationSocket, RequestHandler

__all__ = [
    "AdaptiveDUL",
    "BulkReadSocket",
    "LowLatencyRequestHandler",
    "WaitingDIMSEProvider",
    "handler_class",
]

_READ_CHUNK = 256 * 1024  # bytes per recv(); a PDU's length is the peer's word, not ours


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
    """Apply the three changes to an association that has its socket but has not started."""
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
