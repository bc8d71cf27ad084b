"""Sending result objects to one destination: C-STORE (pynetdicom) or STOW-RS (DICOMweb).

Both senders answer with one :class:`~radpilot.results.outcome.SendOutcome` per file, in
the order given, each *delivered*, *retry* or *refused* (see :mod:`radpilot.results.outcome`).
The STOW-RS sender lives in :mod:`radpilot.results.stow` and is re-exported here.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association

from radpilot.core.settings import Destination
from radpilot.dicom.requestor import keep_responses
from radpilot.results.outcome import (
    Sendable,
    Sender,
    SendOutcome,
    Verdict,
    classify_status,
    inspect,
    load,
)
from radpilot.results.stow import StowSender

__all__ = [
    "CStoreSender",
    "SendOutcome",
    "Sender",
    "StowSender",
    "Verdict",
    "classify_status",
]

log = logging.getLogger(__name__)

_MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are odd numbers 1-255
_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
#: What radpilot writes: Comprehensive SR, Secondary Capture, Segmentation.
_RESULT_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.88.33",
    "1.2.840.10008.5.1.4.1.1.7",
    "1.2.840.10008.5.1.4.1.1.66.4",
)
#: Presentation context results that say "never": abstract / transfer syntax not supported.
_CONTEXT_REFUSED = {3: "SOP class not supported", 4: "transfer syntax not supported"}


class CStoreSender:
    """C-STORE files to one DICOM node over one association.

    Each file travels in its own transfer syntax. By default each data set is read with
    pydicom and encoded by pynetdicom, and uncompressed files also offer the other
    uncompressed syntax. Where the application has switched on pynetdicom's process-wide
    ``_config.STORE_SEND_CHUNKED_DATASET``, the file's bytes are streamed as they are
    (bit for bit, 15-18 % faster for 0.5 MB images) and only its own syntax is offered.

    ``TCP_NODELAY`` is set on the socket as soon as it connects: with Nagle's algorithm
    on, each small PDU waits for a delayed ACK and pynetdicom manages 16-21 images/s into
    Orthanc here, against 44 (0.5 MB CT slices) to 63 (SRs) with it off
    (``bench/bench_delivery.py``, docs/delivery.md).

    Parameters
    ----------
    destination
        The node: ``ae_title``, ``host``, ``port``.
    ae_title
        Our calling AE title.
    timeout
        Seconds allowed for connecting, association negotiation, each DIMSE response and
        network silence.
    keepalive
        Keep the association open this many seconds after a batch and use it for the next
        batch whose objects it has accepted contexts for (0: release after every batch).
        Opening and releasing an association cost about as much as the C-STORE of an SR
        (docs/delivery.md). Keep it below the peer's idle timeout (Orthanc: 30 s) and
        below ``timeout``; an association the peer closed meanwhile is noticed before use,
        and a batch that finds it dead as it starts is sent again on a new one.
    """

    def __init__(
        self,
        destination: Destination,
        ae_title: str,
        *,
        timeout: float = 30.0,
        keepalive: float = 0.0,
    ) -> None:
        self.destination = destination
        self.ae_title = ae_title
        self.timeout = timeout
        self.keepalive = min(keepalive, timeout / 2)
        #: Whether the last association's socket reported TCP_NODELAY on (None: none opened).
        self.nodelay: bool | None = None
        #: Associations opened so far (for tests and the delivery benchmark).
        self.opened = 0
        self._socket: socket.socket | None = None  # set once connected
        self._held: Association | None = None
        self._held_socket: socket.socket | None = None
        self._held_until = 0.0
        self._lock = threading.Lock()

    def send(self, paths: Sequence[Path], *, deadline: float | None = None) -> list[SendOutcome]:
        """C-STORE ``paths``, one outcome per path in order.

        Files not started by ``deadline`` (a :func:`time.monotonic` value) come back
        NOT_SENT. Only the file meta is read up front; each data set is read just before
        it is sent, so a batch of large objects never sits in memory at once.
        """
        results: dict[int, SendOutcome] = {}
        batches: list[list[tuple[int, Sendable]]] = []
        contexts: set[tuple[str, str]] = set()
        for index, path in enumerate(paths):
            item = inspect(path)
            if isinstance(item, SendOutcome):
                results[index] = item
                continue
            key = (item.sop_class, item.transfer_syntax)
            if not batches or (key not in contexts and len(contexts) == _MAX_CONTEXTS):
                batches.append([])  # a second association only beyond 128 contexts
                contexts = set()
            contexts.add(key)
            batches[-1].append((index, item))
        with self._lock:
            for batch in batches:
                results.update(self._send_batch(batch, deadline))
        return [results[i] for i in range(len(paths))]

    def close(self) -> None:
        """Release the association kept open for the next batch, if any."""
        with self._lock:
            self._drop_held()

    def expire(self) -> float | None:
        """Release the kept association if its time is up.

        Returns
        -------
        float or None
            Seconds until the kept association expires, or None when none is kept.
        """
        with self._lock:
            if self._held is None:
                return None
            left = self._held_until - time.monotonic()
            if left > 0 and self._held.is_established:
                return left
            self._drop_held()
            return None

    def _send_batch(
        self, batch: list[tuple[int, Sendable]], deadline: float | None
    ) -> dict[int, SendOutcome]:
        raw = bool(_config.STORE_SEND_CHUNKED_DATASET)
        held = self._take_held(batch, raw=raw)
        if held is not None:
            out = self._store_each(held, batch, deadline, raw=raw)
            if not _died_at_start(out, batch):
                self._keep_or_release(held)
                return out
            log.info("the kept association was closed by the peer; opening a new one")
            self._close(held)
        assoc = self._open(batch, raw=raw)
        try:
            if not assoc.is_established:
                return self._not_established(assoc, batch)
            return self._store_each(assoc, batch, deadline, raw=raw)
        finally:
            self._keep_or_release(assoc)

    # the kept association ---------------------------------------------------------------
    def _take_held(self, batch: list[tuple[int, Sendable]], *, raw: bool) -> Association | None:
        """The kept association if it is alive, in time and can carry every object."""
        assoc = self._held
        if assoc is None:
            return None
        if not assoc.is_established or time.monotonic() > self._held_until:
            self._drop_held()
            return None
        accepted: dict[str, set[str]] = {}
        for cx in assoc.accepted_contexts:
            accepted.setdefault(str(cx.abstract_syntax), set()).update(
                str(ts) for ts in cx.transfer_syntax
            )
        for _, item in batch:
            syntaxes = accepted.get(item.sop_class, set())
            usable = {item.transfer_syntax}
            if item.transfer_syntax in _UNCOMPRESSED and not raw:
                usable |= set(_UNCOMPRESSED)
            if not syntaxes & usable:
                self._drop_held()  # a new association proposes the new classes
                return None
        self._held = None
        self._socket = self._held_socket
        return assoc

    def _keep_or_release(self, assoc: Association) -> None:
        if self.keepalive > 0 and assoc.is_established:
            self._held, self._held_socket = assoc, self._socket
            self._held_until = time.monotonic() + self.keepalive
            return
        self._release(assoc)

    def _drop_held(self) -> None:
        """Release and close the kept association, if any."""
        assoc, self._held = self._held, None
        if assoc is not None:
            self._socket = self._held_socket
            self._release(assoc)

    def _release(self, assoc: Association) -> None:
        """Release ``assoc`` (unless the peer already ended it) and close its socket."""
        if assoc.is_established:
            assoc.release()
        self._close(assoc)

    # one association ------------------------------------------------------------------------
    def _open(self, batch: list[tuple[int, Sendable]], *, raw: bool) -> Association:
        ae = AE(ae_title=self.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.connection_timeout = self.timeout
        # Raw mode (pynetdicom streams each file's bytes as they are) needs the file's own
        # transfer syntax accepted: no alternatives are offered then.
        proposed: dict[str, set[str]] = {}
        for _, item in batch:
            syntaxes = [item.transfer_syntax]
            if item.transfer_syntax in _UNCOMPRESSED and not raw:
                syntaxes += [s for s in _UNCOMPRESSED if s != item.transfer_syntax]
            if set(syntaxes) - proposed.setdefault(item.sop_class, set()):
                ae.add_requested_context(item.sop_class, syntaxes)
                proposed[item.sop_class].update(syntaxes)
        if self.keepalive > 0:
            # A kept association should also carry the next result's other objects (the
            # SR, then its key image, then the next study's SR), so radpilot's own result
            # classes are proposed too while there is room.
            room = _MAX_CONTEXTS - len(ae.requested_contexts)
            for sop_class in [c for c in _RESULT_CLASSES if c not in proposed][: max(room, 0)]:
                ae.add_requested_context(sop_class, list(_UNCOMPRESSED))
        self._socket = None
        self.opened += 1
        return keep_responses(
            ae.associate(
                self.destination.host,
                self.destination.port,
                ae_title=self.destination.ae_title,
                evt_handlers=[(evt.EVT_CONN_OPEN, self._on_open)],
            )
        )

    def _close(self, assoc: Association) -> None:
        """Close the socket once the association's thread is done with it.

        pynetdicom 3.0.4 skips ``close()`` when ``shutdown()`` fails (a peer that reset
        the connection), leaving the socket to the garbage collector; fixed upstream in
        https://github.com/pydicom/pynetdicom/pull/999.
        """
        if assoc.ident is not None:  # a refused connection never starts the thread
            assoc.join(self.timeout)
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _store_each(
        self,
        assoc: Association,
        batch: list[tuple[int, Sendable]],
        deadline: float | None,
        *,
        raw: bool,
    ) -> dict[int, SendOutcome]:
        out: dict[int, SendOutcome] = {}
        refused = self._refused_contexts(assoc)
        for index, item in batch:
            path = item.path
            if not assoc.is_established:
                out[index] = SendOutcome(path, Verdict.RETRY, "association lost")
                continue
            if deadline is not None and time.monotonic() > deadline:
                out[index] = SendOutcome(path, Verdict.NOT_SENT, "deadline reached")
                continue
            dataset = path if raw else load(path)
            if isinstance(dataset, SendOutcome):
                out[index] = dataset
                continue
            try:
                response = assoc.send_c_store(dataset)
            except ValueError as exc:  # no accepted context for it, or it cannot be encoded
                reason = refused.get(item.sop_class, f"not sendable: {exc}")
                out[index] = SendOutcome(path, Verdict.REFUSED, reason)
                continue
            except Exception as exc:  # noqa: BLE001 - see below
                # pynetdicom raises assorted errors on odd data sets (see dicom/scu.py); the
                # file stays pending and the other files of the batch still go.
                log.warning("C-STORE raised %s; the object stays pending", type(exc).__name__)
                out[index] = SendOutcome(path, Verdict.RETRY, f"send failed ({exc!r:.200})")
                continue
            if "Status" not in response:
                reason = "no response (timeout or association aborted)"
                out[index] = SendOutcome(path, Verdict.RETRY, reason)
                continue
            status = int(response.Status)
            verdict, meaning = classify_status(status)
            out[index] = SendOutcome(path, verdict, "" if status == 0 else meaning, status)
        return out

    def _not_established(
        self, assoc: Association, batch: list[tuple[int, Sendable]]
    ) -> dict[int, SendOutcome]:
        refused = self._refused_contexts(assoc)
        where = f"{self.destination.ae_title}@{self.destination.host}:{self.destination.port}"
        answer = assoc.acceptor.primitive
        if self._socket is None:  # pynetdicom reports a refused connection as "aborted"
            reason = f"no connection to {where} (refused, unreachable or timed out)"
        elif assoc.is_rejected:
            why = "" if answer is None else f" ({answer.result_str}, {answer.source_str}: "
            why += "" if answer is None else f"{answer.reason_str})"
            reason = f"association rejected by {where}{why}"
        elif assoc.is_aborted and refused and not assoc.accepted_contexts:
            reason = f"{where} accepted no presentation context"
        else:
            reason = f"association with {where} aborted"
        out: dict[int, SendOutcome] = {}
        for index, item in batch:
            never = refused.get(item.sop_class)
            if never is not None:
                out[index] = SendOutcome(item.path, Verdict.REFUSED, never)
            else:
                out[index] = SendOutcome(item.path, Verdict.RETRY, reason)
        return out

    def _refused_contexts(self, assoc: Association) -> dict[str, str]:
        """SOP classes the node refused for good (and none of their contexts accepted)."""
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
        refused: dict[str, str] = {}
        for cx in assoc.rejected_contexts:
            sop_class = str(cx.abstract_syntax)
            if cx.result in _CONTEXT_REFUSED and sop_class not in accepted:
                refused[sop_class] = (
                    f"{self.destination.name} refused the presentation context: "
                    f"{_CONTEXT_REFUSED[cx.result]} ({sop_class})"
                )
        return refused

    def _on_open(self, event: evt.Event) -> None:
        assoc_socket = event.assoc.dul.socket
        sock = assoc_socket.socket if assoc_socket is not None else None
        if sock is None:
            self.nodelay = False
            return
        self._socket = sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.nodelay = bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def _died_at_start(out: dict[int, SendOutcome], batch: list[tuple[int, Sendable]]) -> bool:
    """A reused association that failed on its first object without any answer."""
    first = out.get(batch[0][0]) if batch else None
    return (
        first is not None
        and first.verdict is Verdict.RETRY
        and first.status is None
        and first.reason in ("association lost", "no response (timeout or association aborted)")
    )
