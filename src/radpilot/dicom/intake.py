"""The intake: every DICOM object that reaches radpilot passes through here.

``Intake.accept`` is called on the caller's thread (a C-STORE association or ``ingest``)
and returns as soon as the object is safely in the archive; indexing into the database
happens on a background thread in batches, in the lulls between transfers (at most
``Intake.MAX_DELAY`` late), so neither a slow database nor the indexing work itself stalls
an association.
Objects accepted but not yet indexed have a ``pending/`` link in the archive and are indexed
again at the next start if the process dies first.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset, FileDataset
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from radpilot.core.events import STUDY_INDEXED, EventBus
from radpilot.core.logging import ref
from radpilot.dicom.index import StoredFile, fit, index_instances
from radpilot.dicom.reading import (
    InstanceMeta,
    InvalidInstanceError,
    extract_meta,
    identify,
    parse_bytes,
    read_values,
)
from radpilot.dicom.status import Status
from radpilot.dicom.writing import encode_file
from radpilot.store import Archive, Database, OutOfSpaceError, PutOutcome
from radpilot.store.models import Receipt, ReceiptOutcome, utcnow

if TYPE_CHECKING:
    from radpilot.dicom.deid import Deidentifier

__all__ = ["Arrival", "Intake", "IntakeResult"]

log = logging.getLogger(__name__)

_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)  # float, double float, pixel data


@dataclass(frozen=True, slots=True)
class Arrival:
    """One object offered to the intake.

    Attributes
    ----------
    data
        The complete DICOM file: preamble, file meta information and data set.
    source
        ``"dicom"`` (network) or ``"import"``.
    origin
        ``AET@host`` for the network, the file path for imports (kept in the database
        only, never logged).
    expected_sop_class_uid, expected_sop_instance_uid
        The UIDs of the C-STORE request, which the data set must match.
    """

    data: bytes
    source: str
    origin: str | None = None
    calling_ae_title: str | None = None
    expected_sop_class_uid: str | None = None
    expected_sop_instance_uid: str | None = None


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """What the intake did with an arrival, and the DIMSE status that says so."""

    outcome: ReceiptOutcome
    status: int
    reason: str | None = None
    sop_instance_uid: str | None = None
    study_instance_uid: str | None = None


@dataclass
class _Job:
    receipt: Receipt
    meta: InstanceMeta | None = None
    stored: StoredFile | None = None
    dataset: Dataset | None = None  # read for the index on the indexer thread
    queued_at: float = field(default_factory=time.monotonic)


@dataclass
class IntakeCounters:
    """Running totals since start, for summaries and health checks."""

    stored: int = 0
    duplicate: int = 0
    conflict: int = 0
    rejected: int = 0
    quarantined: int = 0
    indexed: int = 0
    index_failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        """Increase counter ``name`` by ``n``."""
        with self.lock:
            setattr(self, name, getattr(self, name) + n)


class Intake:
    """Accept DICOM objects into the archive and index them in the background.

    Parameters
    ----------
    db, archive
        Where metadata and files go.
    bus
        Receives ``instance.indexed`` events after each committed batch.
    deidentifier
        When given, objects are de-identified before they are archived; the archive then
        never holds the original. Objects it flags for burned-in identifiers go to
        ``quarantine_dir`` instead.
    max_delay
        How long a queued object may wait for a lull before it is indexed anyway
        (default :attr:`MAX_DELAY`); keep it well under the study-complete quiet window,
        which counts from indexing.
    """

    BATCH = 512
    LULL = 0.05  # seconds without an arrival after which the indexer runs
    MAX_DELAY = 5.0  # seconds a queued job may wait for such a lull

    def __init__(
        self,
        db: Database,
        archive: Archive,
        bus: EventBus | None = None,
        *,
        deidentifier: Deidentifier | None = None,
        quarantine_dir: Path | None = None,
        max_delay: float | None = None,
    ) -> None:
        self.db = db
        self.archive = archive
        self.bus = bus or EventBus()
        self.deidentifier = deidentifier
        self.quarantine_dir = quarantine_dir
        self._quarantine_archive: Archive | None = None  # created on first use
        self.counters = IntakeCounters()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._unfinished = 0
        self._last_arrival = 0.0  # time.monotonic() of the last accept
        if max_delay is not None:
            self.MAX_DELAY = max_delay
        self._stopping = threading.Event()

    # lifecycle ---------------------------------------------------------------------
    def start(self, *, recover: bool = True) -> None:
        """Index what a previous run left pending (unless ``recover`` is off: a second
        receiver process leaves that to the first), then start the indexer thread."""
        if recover:
            self.recover()
        self._thread = threading.Thread(target=self._run, name="radpilot-indexer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Index everything queued, then stop the indexer thread."""
        if self._thread is None:
            return
        self._stopping.set()  # no waiting for a lull any more
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        self._stopping.clear()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every accepted object is indexed; ``False`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._unfinished:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def recover(self) -> int:
        """Index files accepted before a crash (those still linked in ``pending/``)."""
        count = 0
        for path in self.archive.pending():
            data = path.read_bytes()
            try:
                meta = extract_meta(parse_bytes(data))
            except InvalidInstanceError as exc:
                log.error("pending file %s cannot be indexed: %s", ref(path.stem), exc.reason)
                continue
            rel = self.archive.relative_path(meta.sop_instance_uid)
            written = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
            stored = StoredFile(rel, _sha256(data), len(data), "recovered", received_at=written)
            receipt = Receipt(
                source="recovered",
                outcome=ReceiptOutcome.STORED,
                sop_instance_uid=meta.sop_instance_uid,
                study_instance_uid=meta.study_instance_uid,
                sha256=stored.sha256,
                stored_path=rel,
            )
            self._enqueue(_Job(receipt, meta, stored))
            count += 1
        if count:
            log.info("re-indexing %d instance(s) accepted before the last shutdown", count)
        return count

    # the hot path ------------------------------------------------------------------
    def accept(self, arrival: Arrival) -> IntakeResult:
        """Archive one object; return once it is on disk (or rejected).

        Never raises for bad data: the result carries the failure status and reason.
        """
        receipt = Receipt(source=arrival.source, origin=arrival.origin, at=utcnow())
        try:
            result, job = self._accept(arrival, receipt)
        except OutOfSpaceError as exc:
            result, job = self._reject(receipt, Status.OUT_OF_RESOURCES, str(exc)), None
        except OSError as exc:
            reason = f"archive write failed: {exc.strerror or exc}"
            result, job = self._reject(receipt, Status.OUT_OF_RESOURCES, reason), None
        except InvalidInstanceError as exc:
            result, job = self._reject(receipt, exc.status, exc.reason), None
        except Exception as exc:
            log.exception("unexpected error while accepting a %s object", arrival.source)
            reason = f"processing failure ({type(exc).__name__}); see the radpilot log"
            result, job = self._reject(receipt, Status.PROCESSING_FAILURE, reason), None
        receipt.status = result.status
        self._last_arrival = time.monotonic()  # before the job is queued: the indexer
        self._enqueue(job or _Job(receipt))  # must not see it with the old time
        return result

    def _accept(self, arrival: Arrival, receipt: Receipt) -> tuple[IntakeResult, _Job | None]:
        data = arrival.data
        ds = parse_bytes(data)
        meta = identify(ds)
        _check_request(arrival, meta)
        receipt.sop_instance_uid = meta.sop_instance_uid
        receipt.study_instance_uid = meta.study_instance_uid
        deidentified = False
        if self.deidentifier is not None:
            outcome = self.deidentifier.deidentify(ds)
            if outcome.quarantine_reason is not None:
                return self._quarantine(receipt, data, meta, outcome.quarantine_reason), None
            ds = outcome.dataset
            data = encode_file(ds)
            meta = identify(ds)
            deidentified = True
            receipt.sop_instance_uid = meta.sop_instance_uid
            receipt.study_instance_uid = meta.study_instance_uid
        put = self.archive.put(data, meta.sop_instance_uid)
        receipt.sha256 = put.sha256
        receipt.stored_path = put.relative_path
        if put.outcome is PutOutcome.STORED:
            receipt.outcome = ReceiptOutcome.STORED
            self.counters.add("stored")
            stored = StoredFile(
                put.relative_path,
                put.sha256,
                put.size,
                arrival.source,
                arrival.calling_ae_title,
                deidentified,
                receipt.at,
            )
            for tag in _PIXEL_TAGS:  # the indexer needs the header only
                ds.pop(tag, None)
            if isinstance(ds, FileDataset):
                # pydicom keeps the buffer it parsed, the whole received file, for values it
                # deferred; a queued job must not keep every image alive until indexing.
                ds.buffer = None
            return self._ok(receipt, meta), _Job(receipt, meta, stored, ds)
        if put.outcome is PutOutcome.DUPLICATE:
            receipt.outcome = ReceiptOutcome.DUPLICATE
            receipt.reason = "identical copy of an archived instance"
            self.counters.add("duplicate")
        else:
            receipt.outcome = ReceiptOutcome.CONFLICT
            receipt.reason = "different object under an archived SOP Instance UID; kept aside"
            self.counters.add("conflict")
            log.warning(
                "instance %s arrived again with different content; the first copy "
                "is kept, the new one is in %s",
                ref(meta.sop_instance_uid),
                "conflicts/",
            )
        return self._ok(receipt, meta), None

    def _ok(self, receipt: Receipt, meta: InstanceMeta) -> IntakeResult:
        return IntakeResult(
            receipt.outcome,
            Status.SUCCESS,
            receipt.reason,
            meta.sop_instance_uid,
            meta.study_instance_uid,
        )

    def _reject(self, receipt: Receipt, status: int, reason: str) -> IntakeResult:
        receipt.outcome = ReceiptOutcome.REJECTED
        receipt.reason = reason
        self.counters.add("rejected")
        log.warning("rejected %s object (status 0x%04X): %s", receipt.source, status, reason)
        return IntakeResult(
            ReceiptOutcome.REJECTED,
            status,
            reason,
            receipt.sop_instance_uid,
            receipt.study_instance_uid,
        )

    def _quarantine(
        self, receipt: Receipt, data: bytes, meta: InstanceMeta, reason: str
    ) -> IntakeResult:
        if self.quarantine_dir is None:
            raise InvalidInstanceError(
                f"would be quarantined ({reason}) but no quarantine folder is configured",
                Status.PROCESSING_FAILURE,
            )
        if self._quarantine_archive is None:
            self._quarantine_archive = Archive(self.quarantine_dir, fsync=self.archive.fsync)
        quarantine = self._quarantine_archive
        put = quarantine.put(data, meta.sop_instance_uid)
        quarantine.mark_indexed(meta.sop_instance_uid)  # quarantined files are not indexed
        receipt.outcome = ReceiptOutcome.QUARANTINED
        receipt.reason = reason
        receipt.sha256 = put.sha256
        receipt.stored_path = f"quarantine/{put.relative_path}"
        self.counters.add("quarantined")
        log.info("quarantined instance %s for review: %s", ref(meta.sop_instance_uid), reason)
        return self._ok(receipt, meta)

    # the indexer -------------------------------------------------------------------
    def _enqueue(self, job: _Job) -> None:
        with self._idle:
            self._unfinished += 1
        self._queue.put(job)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            self._wait_for_lull(first.queued_at)
            batch = [first]
            stopping = False
            while len(batch) < self.BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._index_batch(batch)
            if stopping:
                return

    def _wait_for_lull(self, oldest: float) -> None:
        """Wait until no object has arrived for ``LULL`` seconds, or until the oldest
        queued job is ``MAX_DELAY`` seconds old.

        Indexing is Python work that holds the GIL (writing a radiograph's rows alone took
        0.3 ms); done between the images of a transfer it lengthens every C-STORE round
        trip of that transfer.
        Done in the lull after it, one transaction per batch also costs far less than
        one per instance. The bound keeps the index (and study-complete detection, which
        counts from indexing) at most ``MAX_DELAY`` behind an endless stream.
        """
        while not self._stopping.is_set():
            now = time.monotonic()
            quiet_for = now - self._last_arrival
            left = oldest + self.MAX_DELAY - now
            if quiet_for >= self.LULL or left <= 0:
                return
            self._stopping.wait(min(self.LULL - quiet_for, left))

    def _index_batch(self, batch: list[_Job]) -> None:
        indexed = self._commit_with_retry(batch)
        if not indexed and len(batch) > 1:
            # A permanent error in one row must not keep the others out of the index.
            indexed = [job for job in batch if self._commit_with_retry([job])]
        failed = len(batch) - len(indexed)
        if failed:
            # The files stay linked in pending/ and are tried again at the next start.
            self.counters.add("index_failures", failed)
        for job in indexed:
            if job.stored is not None and job.meta is not None:
                self.bus.publish(
                    STUDY_INDEXED,
                    study_instance_uid=job.meta.study_instance_uid,
                    sop_instance_uid=job.meta.sop_instance_uid,
                )
        with self._idle:
            self._unfinished -= len(batch)
            if not self._unfinished:
                self._idle.notify_all()

    def _commit_with_retry(self, batch: list[_Job]) -> list[_Job]:
        """Commit ``batch``; retry connection-level errors with backoff.

        Returns the batch when it was committed, an empty list when it was not.
        """
        for attempt in range(1, 6):
            try:
                self._commit(batch)
                return batch
            except OperationalError as exc:  # the database is away: wait and retry
                log.warning("indexing failed (%s), retry %d", type(exc).__name__, attempt)
                time.sleep(0.2 * 2**attempt)
            except IntegrityError:
                # Another receiver process added the same patient, study or series between
                # our lookup and our insert; the next attempt finds it. Twice is a real
                # conflict.
                if attempt >= 2:
                    log.error("indexing %d instance(s) failed: integrity error", len(batch))
                    return []
                time.sleep(0.05)
            except SQLAlchemyError as exc:  # the data itself is refused: do not retry
                log.error("indexing %d instance(s) failed: %s", len(batch), type(exc).__name__)
                return []
        log.error("indexing %d instance(s) failed for good: database unavailable", len(batch))
        return []

    def _commit(self, batch: list[_Job]) -> None:
        for job in batch:
            if job.dataset is not None and job.meta is not None:
                read_values(job.dataset, job.meta)
                job.dataset = None
        items = [
            (job.meta, job.stored)
            for job in batch
            if job.meta is not None and job.stored is not None
        ]
        with self.db.session() as session:
            index_instances(session, items)
            session.execute(insert(Receipt), [_receipt_row(job.receipt) for job in batch])
        for meta, _ in items:
            self.archive.mark_indexed(meta.sop_instance_uid)
        self.counters.add("indexed", len(items))


_ORIGIN_MAX = 512  # Receipt.origin's column length
_RECEIPT_FIELDS = (
    "at",
    "source",
    "origin",
    "outcome",
    "sop_instance_uid",
    "study_instance_uid",
    "sha256",
    "status",
    "reason",
    "stored_path",
)


def _receipt_row(receipt: Receipt) -> dict[str, Any]:
    row = {name: getattr(receipt, name) for name in _RECEIPT_FIELDS}
    origin = row["origin"]
    if origin is not None and len(origin) > _ORIGIN_MAX:
        row["origin"] = "…" + origin[-(_ORIGIN_MAX - 1) :]  # the file name is at the end
    return fit(Receipt, row)


def _check_request(arrival: Arrival, meta: InstanceMeta) -> None:
    """The data set must be the instance the C-STORE request announced."""
    if (
        arrival.expected_sop_class_uid is not None
        and meta.sop_class_uid != arrival.expected_sop_class_uid
    ):
        raise InvalidInstanceError(
            "SOP Class UID in the data set differs from the C-STORE request",
            Status.DATASET_DOES_NOT_MATCH,
        )
    if (
        arrival.expected_sop_instance_uid is not None
        and meta.sop_instance_uid != arrival.expected_sop_instance_uid
    ):
        raise InvalidInstanceError(
            "SOP Instance UID in the data set differs from the C-STORE request",
            Status.DATASET_DOES_NOT_MATCH,
        )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
