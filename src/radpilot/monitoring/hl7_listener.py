"""An HL7 v2 listener (MLLP) for final reports: ORU^R01 messages become outcomes.

python-hl7 provides the MLLP framing and the parser. The study is found by the filler
order number (OBR-3, the accession number in most RIS) or by a Study Instance UID in
OBR-3/OBX-5 when the sender puts one there; the report text is every OBX-5 of the
message, joined; the report time is OBR-22 (results report / status change), else OBR-7
(observation time) — an HL7 time without an offset is read as the server's local time —
and it is what report turnaround counts (:mod:`radpilot.monitoring.turnaround`); a time
that cannot be read refuses the message (AR). The answer is an ACK: AA when the outcome
was stored, AE with the reason when it was refused (unknown study, report that neither
affirms nor negates), AR for a message that is not an ORU or cannot be parsed. Nothing of
the message is logged but its type and control id.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
from typing import Any

import hl7
from hl7.mllp import start_hl7_server

from radpilot.monitoring.outcomes import Outcome, record_outcome
from radpilot.store import Database

__all__ = ["OutcomeListener", "outcome_of"]

log = logging.getLogger(__name__)


def _field(message: Any, segment: str, index: int) -> str:
    """The field's text, "" when the segment or field is absent; every caller turns an
    empty required field into a refusal that names it (AR with the reason logged)."""
    try:
        return str(message.segment(segment)(index)).strip()
    except (KeyError, IndexError):
        return ""


def outcome_of(message: Any) -> Outcome:
    """The outcome an ORU^R01 message carries.

    Raises
    ------
    ValueError
        If it is not an ORU^R01 or has no OBR segment.
    """
    kind = _field(message, "MSH", 9)
    if not kind.startswith("ORU"):
        raise ValueError(f"expected ORU^R01, got {kind or 'no message type'}")
    order = _field(message, "OBR", 3).split("^")[0]
    if not order:
        raise ValueError("the OBR segment has no filler order number (OBR-3)")
    texts = []
    observations = list(message.segments("OBX"))
    for segment in observations:
        if len(segment) > 5:  # OBX-5, the observation value (the report text)
            texts.append(str(segment(5)).replace("~", "\n"))
    if observations and not texts:
        raise ValueError("the OBX segments carry no observation value (OBX-5)")
    uid = order if order.count(".") >= 3 and order.replace(".", "").isdigit() else None
    return Outcome(
        study_instance_uid=uid,
        accession_number=None if uid else order,
        text="\n".join(texts),
        source="hl7",
        at=_report_time(message),
    )


def _report_time(message: Any) -> dt.datetime | None:
    """OBR-22, else OBR-7, as an aware UTC time; None when neither is filled.

    Raises
    ------
    ValueError
        If the field is filled but not an HL7 time.
    """
    for number in (22, 7):
        text = _field(message, "OBR", number).split("^")[0].strip()
        if text:
            try:
                at = hl7.parse_datetime(text)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"OBR-{number} is not an HL7 time") from exc
            if isinstance(at, dt.datetime):
                return at.astimezone(dt.UTC)  # a naive time is taken as local
    return None


class OutcomeListener:
    """The MLLP server on ``host:port`` in its own thread and event loop."""

    def __init__(self, db: Database, host: str, port: int) -> None:
        self.db = db
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._connections: set[asyncio.Task[None]] = set()

    async def _handle(self, reader: Any, writer: Any) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while not writer.is_closing():
                message = await reader.readmessage()
                writer.writemessage(await asyncio.to_thread(self._answer, message))
                await writer.drain()
        except asyncio.IncompleteReadError as exc:
            if exc.partial:  # closed in the middle of a message: it was never answered
                log.warning(
                    "HL7 sender closed the connection inside a message (%d bytes lost)",
                    len(exc.partial),
                )
            else:
                log.debug("HL7 sender closed the connection")
        except asyncio.CancelledError:
            log.info("HL7 connection closed: the listener is stopping")
        except Exception as exc:  # noqa: BLE001 - one bad connection must not stop the server
            log.warning("HL7 connection ended: %s", type(exc).__name__)
        finally:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()
            if task is not None:
                self._connections.discard(task)

    def _answer(self, message: Any) -> Any:
        control = _field(message, "MSH", 10)
        try:
            outcome = outcome_of(message)
        except ValueError as exc:
            log.info("HL7 message %s refused: %s", control, exc)
            return message.create_ack("AR")
        stored, why = record_outcome(self.db, outcome, actor="hl7")
        if stored is None:
            log.info("HL7 message %s: outcome refused (%s)", control, why)
            ack = message.create_ack("AE")
            ack.segment("MSA").assign_field(why or "refused", 3)
            return ack
        log.info("HL7 message %s: outcome stored as read %d", control, stored)
        return message.create_ack("AA")

    def start(self, timeout: float = 10.0) -> None:
        """Listen; returns once the port is bound (``port`` 0 picks a free one)."""

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def serve() -> None:
                server = await start_hl7_server(self._handle, self.host, self.port)
                self._server = server
                self.port = int(server.sockets[0].getsockname()[1])
                self._ready.set()

            loop.run_until_complete(serve())
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="radpilot-hl7", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise OSError(f"the HL7 listener could not listen on {self.host}:{self.port}")
        log.info("HL7 listener on %s:%d", self.host, self.port)

    def stop(self) -> None:
        """Close the port and stop the loop."""
        loop, server = self._loop, self._server
        if loop is None:
            return

        async def close() -> None:
            if server is not None:
                server.close()
                await server.wait_closed()
            for task in list(self._connections):  # open connections end with the server
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            loop.stop()

        asyncio.run_coroutine_threadsafe(close(), loop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = None


def parse(text: str) -> Any:
    """An HL7 message from its text (segments separated by carriage returns)."""
    return hl7.parse(text)
