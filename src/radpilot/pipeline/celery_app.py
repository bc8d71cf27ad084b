"""Scale-out: Celery carries job ids; the database stays the state.

A message is only a hint that job N may be due. The worker claims the job row with the
same compare-and-set as the embedded pool, so a duplicated or replayed message runs
nothing twice, and a lost message is re-sent by :class:`CelerySweeper` from the
``queued`` rows. Late acknowledgement plus ``reject_on_worker_lost`` make the broker
re-deliver a message whose worker died; the reaper re-queues its row once the heartbeat
lease has passed.
"""

from __future__ import annotations

import logging
import threading

from celery import Celery  # type: ignore[import-untyped]

from radpilot.core.settings import Settings
from radpilot.pipeline.jobs import JobStore
from radpilot.pipeline.runner import JobRunner
from radpilot.pipeline.worker import Heartbeat, worker_id
from radpilot.store import Database

__all__ = ["QUEUE", "TASK", "CelerySweeper", "WorkerState", "make_celery", "worker_argv"]

log = logging.getLogger(__name__)

TASK = "radpilot.run_job"
QUEUE = "radpilot.jobs"


class WorkerState:
    """What one Celery worker process holds: database, runner, heartbeat."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.effective_database_url)
        self.db.migrate()
        self.jobs = JobStore(self.db, settings)
        self.runner = JobRunner(self.db, settings)
        self.heartbeat = Heartbeat(self.jobs, settings.job_lease_seconds)
        self.heartbeat.start()

    def run_job(self, job_id: int) -> str:
        """Claim and run one job; 'skipped' when another worker has it or it is done."""
        worker = worker_id(threading.current_thread().name)
        claimed = self.jobs.claim(worker, limit=1, job_id=job_id)
        if not claimed:
            return "skipped"
        self.heartbeat.track(claimed, worker)
        try:
            self.runner.run(claimed, worker)
        finally:
            self.heartbeat.untrack(claimed)
        return "ran"


def make_celery(settings: Settings, state: WorkerState | None = None) -> Celery:
    """The Celery app for ``settings.broker_url`` (Redis or RabbitMQ).

    ``state`` is created lazily on the first task when not given, so that the sending
    side (``radpilot serve``) never loads models.
    """
    app = Celery("radpilot", broker=settings.broker_url)
    app.conf.update(
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        worker_hijack_root_logger=False,
    )
    holder: dict[str, WorkerState] = {}
    if state is not None:
        holder["state"] = state
    lock = threading.Lock()

    def run_job(job_id: int) -> str:
        with lock:
            if "state" not in holder:
                holder["state"] = WorkerState(settings)
        return holder["state"].run_job(int(job_id))

    app.task(name=TASK)(run_job)
    return app


class CelerySweeper:
    """On the sending side: publish new job ids, and re-publish due ones now and then."""

    def __init__(self, app: Celery, db: Database, settings: Settings, every: float = 30.0) -> None:
        self.app = app
        self.jobs = JobStore(db, settings)
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, job_ids: list[int]) -> None:
        """Publish ``job_ids``; a broker that is down only delays them (sweeper resends)."""
        for job_id in job_ids:
            try:
                self.app.send_task(TASK, args=[job_id], queue=QUEUE, retry=False)
            except Exception as exc:  # noqa: BLE001 - kombu raises many types; row stays queued
                log.warning("could not publish job %d (%s); it stays queued", job_id, exc)

    def start(self) -> None:
        """Start re-publishing due jobs every ``every`` seconds."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="radpilot-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the sweeper."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.send(self.jobs.due())
            except Exception:
                log.exception("sweeping queued jobs failed; will retry")


def worker_argv(settings: Settings, concurrency: int, extra: list[str] | None = None) -> list[str]:
    """Arguments for ``Celery.worker_main``: threads pool, our queue, no gossip."""
    argv: list[str] = [
        "worker",
        f"--loglevel={settings.log_level}",
        "--pool=threads",
        f"--concurrency={concurrency}",
        "-Q",
        QUEUE,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-n",
        f"radpilot-{worker_id().replace(':', '-')}@%h",
    ]
    return argv + (extra or [])
