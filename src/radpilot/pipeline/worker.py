"""The embedded worker pool, the heartbeat, the reaper, and the study-complete dispatcher.

``radpilot serve`` runs all of them in-process by default. With
``RADPILOT_WORKER_MODE=celery`` the dispatcher sends job ids to the broker instead and
``radpilot worker`` processes run the same :class:`~radpilot.pipeline.runner.JobRunner`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from radpilot.core.errors import ManifestError
from radpilot.core.events import STUDY_COMPLETE, EventBus
from radpilot.core.logging import ref
from radpilot.core.settings import Settings
from radpilot.pipeline.jobs import JobStore
from radpilot.pipeline.routing import RuleSet, load_rules
from radpilot.pipeline.runner import JobRunner
from radpilot.store import Database

__all__ = ["Dispatcher", "Heartbeat", "RulesFile", "WorkerPool", "worker_id"]

log = logging.getLogger(__name__)


def worker_id(suffix: str = "") -> str:
    """``host:pid[:suffix]``, how jobs record who runs them."""
    base = f"{socket.gethostname()}:{os.getpid()}"
    return f"{base}:{suffix}" if suffix else base


class Heartbeat:
    """Keeps the heartbeat of running jobs fresh, and re-queues those of dead workers."""

    def __init__(self, jobs: JobStore, lease_seconds: float) -> None:
        self.jobs = jobs
        self.lease = lease_seconds
        self._running: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def track(self, job_ids: list[int], worker: str) -> None:
        """Start beating for these jobs."""
        with self._lock:
            self._running.update(dict.fromkeys(job_ids, worker))

    def untrack(self, job_ids: list[int]) -> None:
        """Stop beating for these jobs."""
        with self._lock:
            for job_id in job_ids:
                self._running.pop(job_id, None)

    def start(self) -> None:
        """Beat every quarter lease; reap every half lease."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="radpilot-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (running jobs will be reaped by others once the lease ends)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        beats = 0
        while not self._stop.wait(self.lease / 4):
            beats += 1
            with self._lock:
                by_worker: dict[str, list[int]] = {}
                for job_id, worker in self._running.items():
                    by_worker.setdefault(worker, []).append(job_id)
            try:
                for worker, ids in by_worker.items():
                    self.jobs.heartbeat(ids, worker)
                if beats % 2 == 0:
                    self.jobs.reap(self.lease)
            except Exception:
                log.exception("heartbeat failed; will retry")


class WorkerPool:
    """In-process worker threads that claim and run jobs."""

    def __init__(self, db: Database, settings: Settings, runner: JobRunner) -> None:
        self.settings = settings
        self.jobs = JobStore(db, settings)
        self.runner = runner
        self.heartbeat = Heartbeat(self.jobs, settings.job_lease_seconds)
        self._wake = threading.Condition()
        self._pending_wake = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start ``settings.workers`` threads (none when 0) and the heartbeat."""
        self._stop.clear()
        self.heartbeat.start()
        for index in range(self.settings.workers):
            thread = threading.Thread(
                target=self._loop,
                args=(worker_id(f"t{index}"),),
                name=f"radpilot-worker-{index}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; wait for jobs in progress to finish (up to ``timeout``)."""
        self._stop.set()
        self.wake()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._threads.clear()
        self.heartbeat.stop()

    def wake(self) -> None:
        """Make idle workers look for jobs now."""
        with self._wake:
            self._pending_wake = True
            self._wake.notify_all()

    def _loop(self, worker: str) -> None:
        while not self._stop.is_set():
            try:
                claimed = self.jobs.claim(worker, limit=self.settings.batch_size)
            except Exception:
                log.exception("claiming jobs failed; will retry")
                claimed = []
            if not claimed:
                with self._wake:
                    if not self._pending_wake:
                        self._wake.wait(timeout=1.0)
                    self._pending_wake = False
                continue
            self.heartbeat.track(claimed, worker)
            try:
                self.runner.run(claimed, worker)
            except Exception:
                log.exception("worker %s: unexpected error; jobs will be re-run", worker)
            finally:
                self.heartbeat.untrack(claimed)


class RulesFile:
    """The routing rules, re-read when the file changes (a broken edit keeps the old)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._rules = RuleSet.empty()
        self.reload(strict=True)

    def reload(self, strict: bool = False) -> None:
        """Read the file if it changed.

        Raises
        ------
        ManifestError
            Only when ``strict`` (at start): the file is invalid.
        """
        try:
            mtime = self.path.stat().st_mtime if self.path.exists() else None
        except OSError:
            mtime = None
        if mtime == self._mtime and not strict:
            return
        try:
            self._rules = load_rules(self.path)
        except ManifestError:
            if strict:
                raise
            log.exception("routing rules %s are invalid; keeping the previous rules", self.path)
            return
        self._mtime = mtime

    @property
    def rules(self) -> RuleSet:
        """The rules in force (checked for changes on each access)."""
        self.reload()
        return self._rules


class Dispatcher:
    """Turns ``study.complete`` into jobs and hands their ids to workers."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        bus: EventBus,
        rules: RulesFile,
        notify: Callable[[list[int]], None],
    ) -> None:
        self.jobs = JobStore(db, settings)
        self.bus = bus
        self.rules = rules
        self.notify = notify

    def start(self) -> None:
        """Subscribe to study-complete events."""
        self.bus.subscribe(STUDY_COMPLETE, self._on_complete)

    def stop(self) -> None:
        """Unsubscribe."""
        self.bus.unsubscribe(STUDY_COMPLETE, self._on_complete)

    def _on_complete(self, study_instance_uid: str, **_: object) -> None:
        created = self.jobs.enqueue_study(study_instance_uid, self.rules.rules)
        if created:
            log.debug("study %s dispatched as jobs %s", ref(study_instance_uid), created)
            self.notify(created)
