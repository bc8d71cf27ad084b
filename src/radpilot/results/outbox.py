"""The outbox: every result object reaches every destination configured for it, once.

:func:`enqueue` writes one ``deliveries`` row per (object, destination) inside the caller's
transaction, so a result and its deliveries are committed together or not at all.
:class:`Outbox` drains due rows: it claims them, sends each destination's share over one
association (or STOW-RS request per batch), and records what happened. A destination that
is down only delays delivery: the row stays pending with exponential backoff, forever if
need be. Only a definitive refusal (e.g. DIMSE 0xA9xx, 0xCxxx) marks a row failed.

Rows are claimed with a compare-and-set UPDATE that moves ``next_attempt_at`` to the end
of a lease, so two outboxes on one database (two ``radpilot serve`` processes) never send
the same row at the same time. A process that dies between sending and recording leaves
the row leased; it is sent again when the lease runs out, with the same SOP Instance UID,
which a PACS files as the same instance.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from radpilot.core.errors import ConfigurationError
from radpilot.core.settings import Destination, Settings
from radpilot.results.outcome import Sender, SendOutcome, Verdict
from radpilot.results.senders import CStoreSender, StowSender
from radpilot.results.settle import (
    DELIVERED,
    DELIVERY_FAILED,
    Claim,
    DeliveryReport,
    Settler,
    aware,
    check_file,
    requeue_failed,
)
from radpilot.store import Database
from radpilot.store.models import utcnow
from radpilot.store.models_pipeline import Delivery, DeliveryStatus, Result, ResultObject

__all__ = ["DELIVERED", "DELIVERY_FAILED", "DeliveryReport", "Outbox", "enqueue", "requeue_failed"]

log = logging.getLogger(__name__)


def enqueue(
    session: Session, obj: ResultObject, destinations: Sequence[Destination]
) -> list[Delivery]:
    """Queue ``obj`` for every destination whose ``kinds`` include ``obj.kind``.

    Runs inside the caller's transaction; idempotent (the unique (object, destination)
    pair makes a repeated call insert nothing). Objects of results that are not visible
    (shadow models) are never queued.

    Returns
    -------
    list of Delivery
        The rows for the matching destinations, new or already there, in their order.

    Raises
    ------
    sqlalchemy.exc.SQLAlchemyError
        If the database refuses the rows (e.g. ``obj`` is not in ``session``); the
        caller's transaction is then to be rolled back.
    """
    wanted = list(dict.fromkeys(d.name for d in destinations if obj.kind in d.kinds))
    if not wanted:
        return []
    if obj.id is None:
        session.flush()
    result = obj.result if obj.result is not None else session.get(Result, obj.result_pk)
    if result is not None and not result.visible:
        return []
    now = utcnow()
    rows = [
        {
            "object_pk": obj.id,
            "destination": name,
            "status": DeliveryStatus.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for name in wanted
    ]
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        statement = insert(Delivery).values(rows)
        session.execute(
            statement.on_conflict_do_nothing(index_elements=["object_pk", "destination"])
        )
    else:  # other databases: SELECT, then INSERT what is missing
        have = set(
            session.scalars(select(Delivery.destination).where(Delivery.object_pk == obj.id))
        )
        session.add_all(Delivery(**row) for row in rows if row["destination"] not in have)
        session.flush()
    found = {
        row.destination: row
        for row in session.scalars(
            select(Delivery).where(Delivery.object_pk == obj.id, Delivery.destination.in_(wanted))
        )
    }
    return [found[name] for name in wanted]


class Outbox:
    """Drains the ``deliveries`` table, in a background thread or one pass at a time.

    Parameters
    ----------
    db
        The database holding the outbox.
    settings
        ``destinations``, ``data_dir``, ``ae_title``, ``network_timeout`` and the backoff
        (``delivery_retry_seconds`` doubling per attempt up to
        ``delivery_retry_max_seconds``).
    lease_seconds
        How long a claim holds a row; a sender stops starting new files after half of it.
    poll_seconds
        The longest the background thread sleeps (it also wakes on :meth:`wake` and when
        the next retry falls due), so rows queued by other processes are seen.
    batch_limit
        The most rows one pass claims.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        lease_seconds: float = 600.0,
        poll_seconds: float = 5.0,
        batch_limit: int = 200,
    ) -> None:
        self.db = db
        self.settings = settings
        self.settler = Settler(db, settings)
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.batch_limit = batch_limit
        self._destinations = {d.name: d for d in settings.destinations}
        self._senders: dict[str, Sender] = {}  # kept: a C-STORE sender holds its association
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # the background thread ----------------------------------------------------------------
    def start(self) -> None:
        """Run delivery passes in a background thread until :meth:`stop`."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="radpilot-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the thread after the pass in progress (at most ``timeout`` seconds' wait)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.close_senders()

    def close_senders(self) -> None:
        """Release the associations the C-STORE senders keep open between passes."""
        senders, self._senders = list(self._senders.values()), {}
        for sender in senders:
            if isinstance(sender, CStoreSender):
                sender.close()

    def _expire_senders(self) -> float | None:
        """Release kept associations whose time is up; seconds until the next expiry."""
        lefts = [
            left
            for sender in self._senders.values()
            if isinstance(sender, CStoreSender) and (left := sender.expire()) is not None
        ]
        return min(lefts) if lefts else None

    def wake(self) -> None:
        """Make the thread run a pass now (call it after committing new deliveries)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                report = self.deliver_due(keep_associations=True)
                full = report.claimed >= self.batch_limit or report.released > 0
                wait = 0.0 if full else self._seconds_to_next_due()
            except Exception:  # the thread must outlive a database outage
                log.exception("a delivery pass failed; trying again in %s s", self.poll_seconds)
                wait = self.poll_seconds
            expiry = self._expire_senders()
            self._wake.wait(wait if expiry is None else min(wait, expiry + 0.01))

    def _seconds_to_next_due(self) -> float:
        with self.db.session() as session:
            due = session.scalar(
                select(func.min(Delivery.next_attempt_at)).where(
                    Delivery.status == DeliveryStatus.PENDING
                )
            )
        if due is None:
            return self.poll_seconds
        seconds = (aware(due) - utcnow()).total_seconds()
        return min(max(seconds, 0.05), self.poll_seconds)

    # one pass -------------------------------------------------------------------------------
    def deliver_due(
        self, now: dt.datetime | None = None, *, keep_associations: bool = False
    ) -> DeliveryReport:
        """Claim the due pending rows, send them by destination, record each outcome.

        With ``keep_associations`` (the background thread), C-STORE associations stay
        open for ``delivery_keepalive_seconds`` to carry the next pass's objects; a direct
        call releases them before it returns.

        ``now`` (UTC) replaces the clock for choosing due rows, the backoff and
        ``delivered_at``; leave it out except in tests. A destination that cannot be
        reached never raises: its rows stay pending with ``last_error`` set.

        Raises
        ------
        sqlalchemy.exc.SQLAlchemyError
            If the database cannot be read or written; claimed rows then keep their lease
            and are tried again when it ends.
        """
        at = aware(now) if now is not None else utcnow()
        report = DeliveryReport()
        groups: dict[str, list[Claim]] = {}
        for item in self._claim(at):
            groups.setdefault(item.destination, []).append(item)
            report.claimed += 1
        try:
            for name, group in groups.items():
                outcomes = self._send(name, group)
                self.settler.record(group, outcomes, now, report)
        finally:
            if not keep_associations:
                self.close_senders()
        return report

    def _claim(self, now: dt.datetime) -> list[Claim]:
        pending = Delivery.status == DeliveryStatus.PENDING
        with self.db.session() as session:
            candidates = sorted(
                session.scalars(
                    select(Delivery.id)
                    .where(pending, Delivery.next_attempt_at <= now)
                    .order_by(Delivery.next_attempt_at, Delivery.id)
                    .limit(self.batch_limit * 4)  # room for rows a rival outbox takes first
                )
            )
        if not candidates:
            return []
        lease_end = now + dt.timedelta(seconds=self.lease_seconds)
        claimed: list[int] = []
        with self.db.session() as session:  # compare-and-set, row by row, in id order
            for delivery_id in candidates:
                if len(claimed) == self.batch_limit:
                    break
                statement = (
                    update(Delivery)
                    .where(Delivery.id == delivery_id, pending, Delivery.next_attempt_at <= now)
                    .values(next_attempt_at=lease_end)
                    .execution_options(synchronize_session=False)
                )
                if cast(CursorResult[Any], session.execute(statement)).rowcount == 1:
                    claimed.append(delivery_id)
        with self.db.session() as session:
            rows = session.execute(
                select(Delivery, ResultObject)
                .join(ResultObject, Delivery.object_pk == ResultObject.id)
                .where(Delivery.id.in_(claimed))
                .order_by(Delivery.id)
            )
            return [
                Claim(
                    d.id,
                    d.destination,
                    d.attempts,
                    o.id,
                    o.kind,
                    o.sop_instance_uid,
                    o.path,
                    o.sha256,
                )
                for d, o in rows
            ]

    def _send(self, name: str, group: list[Claim]) -> list[SendOutcome]:
        destination = self._destinations.get(name)
        outcomes: dict[int, SendOutcome] = {}
        to_send: list[tuple[int, Path]] = []
        for index, item in enumerate(group):
            path = self.settings.data_dir / item.path
            if destination is None:
                problem: SendOutcome | None = SendOutcome(
                    path,
                    Verdict.RETRY,
                    f"destination {name!r} is not configured; add it back to the settings' "
                    "destinations and the object goes out",
                )
            else:
                problem = check_file(path, item.sha256)
            if problem is not None:
                outcomes[index] = problem
            else:
                to_send.append((index, path))
        if destination is not None and to_send:
            paths = [path for _, path in to_send]
            deadline = time.monotonic() + self.lease_seconds / 2
            try:
                sent = self._sender(destination).send(paths, deadline=deadline)
            except ConfigurationError as exc:
                sent = [SendOutcome(p, Verdict.RETRY, str(exc)) for p in paths]
            except Exception as exc:  # never lose a row to a bug in a sender
                log.exception("sending to %s failed; the objects stay pending", name)
                sent = [
                    SendOutcome(p, Verdict.RETRY, f"sender failed: {exc!r:.200}") for p in paths
                ]
            outcomes.update((index, out) for (index, _), out in zip(to_send, sent, strict=True))
        return [outcomes[i] for i in range(len(group))]

    def _sender(self, destination: Destination) -> Sender:
        sender = self._senders.get(destination.name)
        if sender is None:
            timeout = self.settings.network_timeout
            if destination.kind == "stowrs":
                sender = StowSender(destination, timeout=timeout)
            else:
                sender = CStoreSender(
                    destination,
                    self.settings.ae_title,
                    timeout=timeout,
                    keepalive=self.settings.delivery_keepalive_seconds,
                )
            self._senders[destination.name] = sender
        return sender
