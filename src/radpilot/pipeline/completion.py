"""Study-complete detection: a study that has been quiet for a while is announced.

DICOM has no "end of study" message, so radpilot does what PACS do: a study is complete
once no instance of it has arrived for ``quiet_seconds``. The state lives in the database
(``studies.last_received_at`` / ``completed_at``), so a restart re-arms every study that
had not been announced. A study that receives more instances after being announced is
announced again; subscribers must treat the event as idempotent.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

from sqlalchemy import func, or_, select

from radpilot.core.events import STUDY_COMPLETE, STUDY_INDEXED, EventBus
from radpilot.core.logging import ref
from radpilot.store import Database
from radpilot.store.models import Instance, Series, Study, utcnow

__all__ = ["StudyCompletionWatcher"]

log = logging.getLogger(__name__)


class StudyCompletionWatcher:
    """Publishes ``study.complete`` for studies quiet for ``quiet_seconds``.

    Parameters
    ----------
    db
        Holds the studies' arrival times and completion marks.
    bus
        Where ``instance.indexed`` arrives from the intake and ``study.complete`` goes.
    quiet_seconds
        How long a study must go without a new instance to count as complete.
    """

    def __init__(self, db: Database, bus: EventBus, quiet_seconds: float) -> None:
        self.db = db
        self.bus = bus
        self.quiet_seconds = quiet_seconds
        self._last_seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Re-arm unannounced studies from the database, then start watching."""
        self._rearm()
        self.bus.subscribe(STUDY_INDEXED, self._on_indexed)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="radpilot-study-complete", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; pending studies are re-armed at the next start."""
        self.bus.unsubscribe(STUDY_INDEXED, self._on_indexed)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def pending(self) -> int:
        """How many studies are waiting to be announced."""
        with self._lock:
            return len(self._last_seen)

    def _on_indexed(self, study_instance_uid: str, **_: object) -> None:
        with self._lock:
            self._last_seen[study_instance_uid] = time.monotonic()

    def _rearm(self) -> None:
        with self.db.session() as session:
            rows = session.execute(
                select(Study.study_instance_uid, Study.last_received_at).where(
                    or_(Study.completed_at.is_(None), Study.completed_at < Study.last_received_at)
                )
            ).all()
        now_wall, now_mono = utcnow(), time.monotonic()
        with self._lock:
            for uid, last in rows:
                last = last if last.tzinfo else last.replace(tzinfo=dt.UTC)
                age = max(0.0, (now_wall - last).total_seconds())
                self._last_seen.setdefault(uid, now_mono - age)

    def _run(self) -> None:
        interval = min(1.0, self.quiet_seconds / 4)
        while not self._stop.wait(interval):
            self.check()

    def check(self) -> list[str]:
        """Announce every study quiet long enough; returns their UIDs."""
        cutoff = time.monotonic() - self.quiet_seconds
        with self._lock:
            due = [uid for uid, seen in self._last_seen.items() if seen <= cutoff]
            for uid in due:
                del self._last_seen[uid]
        announced = []
        for uid in due:
            try:
                count = self._mark_complete(uid)
            except Exception:
                log.exception("could not mark study %s complete; will retry", ref(uid))
                with self._lock:
                    self._last_seen.setdefault(uid, time.monotonic())
                continue
            log.info("study %s complete with %d instance(s)", ref(uid), count)
            self.bus.publish(STUDY_COMPLETE, study_instance_uid=uid, instances=count)
            announced.append(uid)
        return announced

    def _mark_complete(self, uid: str) -> int:
        with self.db.session() as session:
            study = session.scalars(select(Study).where(Study.study_instance_uid == uid)).one()
            study.completed_at = utcnow()
            count = session.scalar(
                select(func.count(Instance.id))
                .join(Series, Instance.series_pk == Series.id)
                .where(Series.study_pk == study.id)
            )
        return int(count or 0)
