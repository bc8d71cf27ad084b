"""More receiver processes on the same DICOM port, for concurrent associations.

One Python process receives on one core's worth of CPU however many associations are
open (the GIL), so with ``RADPILOT_RECEIVER_PROCESSES=N`` radpilot starts ``N - 1`` more
processes, each with its own pynetdicom receiver and intake (archive writes, background
indexer) bound to the same port with ``SO_REUSEPORT``: Linux hands each new connection to
one of the listening sockets. What each child indexes is forwarded to the main process's
event bus, so that study-complete detection, routing and the worklist see every arrival
whichever process took it. The archive is safe to share (names are claimed with
``link(2)``), and the database serialises the indexers (SQLite's lock with its busy
timeout, PostgreSQL's rows); a patient, study or series created by two processes at once
is resolved by the intake's retry. Recovery of ``pending/`` runs in the main process
only, before the children start.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections import Counter
from multiprocessing.context import SpawnProcess
from typing import Any

from radpilot.core.events import STUDY_INDEXED, EventBus
from radpilot.core.settings import Settings

__all__ = ["ReceiverProcesses"]

log = logging.getLogger(__name__)

_STOP = None  # the forwarding thread's sentinel


def _child(settings: Settings, events: Any, ready: Any) -> None:
    """A receiver process: intake and receiver until SIGTERM or the parent's death."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: parent decides
    stop = threading.Event()
    # The parent stops a child with SIGTERM rather than a shared multiprocessing Event: a
    # child killed while waiting on such an Event leaves its condition variable expecting
    # a waiter that never wakes, and the parent's set() would block for ever.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    from radpilot.core.heap import freeze_startup_heap
    from radpilot.core.logging import configure_logging
    from radpilot.dicom.reading import configure_pydicom
    from radpilot.dicom.scp import Receiver
    from radpilot.pipeline.service import build_intake
    from radpilot.store import Database

    configure_logging(settings.log_level)
    configure_pydicom()
    parent, pid = os.getppid(), os.getpid()
    db = Database(settings.effective_database_url)
    bus = EventBus()

    def forward(study_instance_uid: str, sop_instance_uid: str | None = None, **_: Any) -> None:
        events.put((pid, study_instance_uid, sop_instance_uid))

    bus.subscribe(STUDY_INDEXED, forward)
    intake = build_intake(settings, db, bus)
    intake.start(recover=False)
    receiver = Receiver(settings, intake)
    receiver.start()
    freeze_startup_heap("in a receiver process")
    ready.set()
    try:
        while not stop.wait(1.0) and os.getppid() == parent:
            pass
    finally:
        receiver.stop()
        intake.stop()
        db.dispose()


class ReceiverProcesses:
    """``count`` extra receiver processes on ``port``, their arrivals published on ``bus``.

    Parameters
    ----------
    settings
        The installation's settings (the children use the same ones, on ``port``).
    port
        The port the main receiver bound (with ``SO_REUSEPORT``).
    bus
        The main process's event bus.
    count
        How many processes to start.
    """

    def __init__(self, settings: Settings, port: int, bus: EventBus, count: int) -> None:
        self.settings = settings.model_copy(update={"dicom_port": port})
        self.bus = bus
        self.count = count
        # spawn, not fork: the main process runs threads (and torch) that fork would copy
        # in whatever state they were in.
        self._mp = mp.get_context("spawn")
        self._stopping = False
        # One queue and one forwarding thread per child: a child killed while writing to a
        # shared queue would leave its lock held and stall the others.
        self._children: list[tuple[SpawnProcess, Any, threading.Thread]] = []
        #: Instances indexed per child process id (for health checks and tests).
        self.indexed_by: Counter[int] = Counter()

    @property
    def pids(self) -> list[int]:
        """The children's process ids."""
        return [p.pid for p, _, _ in self._children if p.pid is not None]

    def start(self, timeout: float = 120.0) -> None:
        """Start the children and wait until each is listening.

        Raises
        ------
        RuntimeError
            If a child exits or is not listening within ``timeout`` seconds.
        """
        readies = []
        for index in range(self.count):
            ready, events = self._mp.Event(), self._mp.Queue()
            process = self._mp.Process(
                target=_child,
                args=(self.settings, events, ready),
                name=f"radpilot-receiver-{index + 2}",
                daemon=True,
            )
            process.start()
            thread = threading.Thread(
                target=self._forward, args=(process, events), name=f"{process.name}-events",
                daemon=True,
            )  # fmt: skip
            thread.start()
            self._children.append((process, events, thread))
            readies.append((process, ready))
        deadline = time.monotonic() + timeout
        for process, ready in readies:
            while not ready.wait(0.2) and process.is_alive() and time.monotonic() < deadline:
                pass
            if not ready.is_set() or not process.is_alive():
                self.stop()
                raise RuntimeError(
                    f"receiver process {process.name} did not start (exit code "
                    f"{process.exitcode}); see the log above"
                )
        log.info("%d more receiver process(es) on port %d", self.count, self.settings.dicom_port)

    def stop(self, timeout: float = 30.0) -> None:
        """Close the children's ports, let them finish indexing, then stop forwarding."""
        self._stopping = True
        for process, _, _ in self._children:
            if process.is_alive():
                process.terminate()  # SIGTERM: the child closes its port and finishes indexing
        for process, events, thread in self._children:
            process.join(timeout)
            if process.is_alive():
                log.warning("receiver process %s did not stop; killing it", process.name)
                process.kill()
                process.join(5)
            events.put(_STOP)  # after the child's last events: the queue keeps their order
            thread.join(10)
        self._children = []

    def _forward(self, process: SpawnProcess, events: Any) -> None:
        """Publish what ``process`` indexed on the main bus; say so if it dies."""
        while True:
            try:
                item = events.get(timeout=1.0)
            except queue.Empty:  # a quiet second: is the child still there?
                if not process.is_alive() and not self._stopping:
                    log.error(
                        "receiver process %s exited with code %s; the other receiver "
                        "processes serve the port until radpilot is restarted",
                        process.name,
                        process.exitcode,
                    )
                    return
                continue
            if item is _STOP:
                return
            pid, study, sop = item
            self.indexed_by[pid] += 1
            self.bus.publish(STUDY_INDEXED, study_instance_uid=study, sop_instance_uid=sop)
