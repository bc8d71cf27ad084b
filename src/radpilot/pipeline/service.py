"""The long-running intake service that ``radpilot serve`` starts.

It wires the pieces in their order of dependence: database and archive, the intake with
its indexer (and de-identification when configured), the DICOM receiver, and the
study-complete watcher. Later stages subscribe to ``service.bus``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from radpilot.core.errors import ConfigurationError
from radpilot.core.events import EventBus
from radpilot.core.settings import Settings
from radpilot.dicom.intake import Intake
from radpilot.dicom.receivers import ReceiverProcesses
from radpilot.dicom.scp import Receiver
from radpilot.pipeline.completion import StudyCompletionWatcher
from radpilot.store import Database, archive_from_settings

if TYPE_CHECKING:
    from radpilot.pipeline.celery_app import CelerySweeper

__all__ = ["IntakeService", "Service", "build_intake"]

log = logging.getLogger(__name__)


def build_intake(settings: Settings, db: Database, bus: EventBus | None = None) -> Intake:
    """The intake configured by ``settings`` (archive, de-identification, quarantine).

    Raises
    ------
    ConfigurationError
        If de-identification on arrival is on but no key is set.
    """
    archive = archive_from_settings(settings)
    deidentifier = None
    if settings.deid_on_intake:
        if settings.deid_key is None:
            raise ConfigurationError(
                "RADPILOT_DEID_ON_INTAKE is on but RADPILOT_DEID_KEY is not set; set a "
                "long random secret (the same on every machine that must agree on "
                "pseudonyms)"
            )
        from radpilot.dicom.deid import Deidentifier

        deidentifier = Deidentifier(
            settings.deid_key.get_secret_value().encode(), settings.deid_options
        )
    return Intake(
        db,
        archive,
        bus,
        deidentifier=deidentifier,
        quarantine_dir=settings.quarantine_dir,
        # Indexing never lags by more than a quarter of the quiet window, so a study
        # that is still arriving is not announced complete between two batches.
        max_delay=min(Intake.MAX_DELAY, settings.study_quiet_seconds / 4),
    )


class IntakeService:
    """Receiver + intake + study-complete watcher, started and stopped together."""

    def __init__(self, settings: Settings, db: Database | None = None) -> None:
        self.settings = settings
        self.db = db or Database(settings.effective_database_url)
        self.bus = EventBus()
        self.intake = build_intake(settings, self.db, self.bus)
        self.receiver = Receiver(settings, self.intake)
        self.watcher = StudyCompletionWatcher(self.db, self.bus, settings.study_quiet_seconds)
        self.receivers: ReceiverProcesses | None = None  # RADPILOT_RECEIVER_PROCESSES > 1

    def start(self) -> None:
        """Migrate the schema, recover pending work, then open the DICOM port.

        Raises
        ------
        OSError
            If the DICOM port cannot be bound.
        """
        self.db.migrate()
        self.intake.start()
        self.watcher.start()
        self.receiver.start()
        extra = self.settings.receiver_processes - 1
        if extra > 0:
            self.receivers = ReceiverProcesses(self.settings, self.receiver.port, self.bus, extra)
            try:
                self.receivers.start()
            except RuntimeError:
                self.receiver.stop()
                raise

    def stop_receiving(self) -> None:
        """Close the DICOM port in every receiver process (the others finish indexing)."""
        if self.receivers is not None:
            self.receivers.stop()
            self.receivers = None
        self.receiver.stop()

    def stop(self) -> None:
        """Close the port, finish indexing what was accepted, stop the watcher."""
        self.stop_receiving()
        self.intake.stop()
        self.watcher.stop()
        self.db.dispose()


class Service:
    """Everything ``radpilot serve`` runs: intake, jobs, delivery and the web API.

    Parameters
    ----------
    settings
        The installation's settings.
    web
        Serve the HTTP API (``--no-web`` turns it off).
    worker
        Run jobs in-process (embedded mode); off with ``--no-worker`` or when
        ``worker_mode`` is ``celery`` (jobs are then published to the broker).
    """

    def __init__(self, settings: Settings, *, web: bool = True, worker: bool = True) -> None:
        from radpilot.pipeline.runner import JobRunner
        from radpilot.pipeline.worker import Dispatcher, RulesFile, WorkerPool
        from radpilot.results.outbox import Outbox

        self.settings = settings
        self.intake_service = IntakeService(settings)
        self.db = self.intake_service.db
        self.bus = self.intake_service.bus
        self.rules = RulesFile(settings.routing_rules_path)
        self.outbox = Outbox(self.db, settings)
        self.runner = JobRunner(self.db, settings, on_delivery=self.outbox.wake)
        self.pool: WorkerPool | None = None
        self.warmed_up = threading.Event()
        """Set once the models are warm (at once when no worker pool runs here)."""
        self.sweeper: CelerySweeper | None = None
        if settings.worker_mode == "celery":
            from radpilot.pipeline.celery_app import CelerySweeper, make_celery

            self.sweeper = CelerySweeper(
                make_celery(settings), self.db, settings, every=settings.job_sweep_seconds
            )
            notify: Callable[[list[int]], None] = self.sweeper.send
        elif worker and settings.workers > 0:
            self.pool = WorkerPool(self.db, settings, self.runner)
            notify = self._wake_pool
        else:
            notify = self._nobody  # another process runs the jobs
        if self.pool is None:
            self.warmed_up.set()
        self.dispatcher = Dispatcher(self.db, settings, self.bus, self.rules, notify)
        from radpilot.monitoring.watcher import AlertWatcher

        self.alerts = AlertWatcher(self.db, settings)
        self.hl7 = None
        if settings.hl7_port is not None:
            from radpilot.monitoring.hl7_listener import OutcomeListener

            self.hl7 = OutcomeListener(self.db, settings.dicom_host, settings.hl7_port)
        self.web = None
        if web:
            from radpilot.web.server import WebServer

            self.web = WebServer(settings, self.db)

    def _wake_pool(self, _job_ids: list[int]) -> None:
        if self.pool is not None:
            self.pool.wake()

    @staticmethod
    def _nobody(_job_ids: list[int]) -> None:
        return None

    @property
    def receiver(self) -> Receiver:
        """The DICOM receiver."""
        return self.intake_service.receiver

    @property
    def intake(self) -> Intake:
        """The intake."""
        return self.intake_service.intake

    def start(self) -> None:
        """Start in order of dependence: storage, workers, delivery, web, then the port.

        Raises
        ------
        OSError
            If the DICOM or HTTP port cannot be bound.
        """
        self.db.migrate()
        self.dispatcher.start()
        if self.pool is not None:
            # In the background: the ports open at once; a job that arrives meanwhile waits
            # for its model to finish loading, as it would without the warm-up.
            threading.Thread(target=self._warm_up, name="radpilot-warm-up", daemon=True).start()
            self.pool.start()
        if self.sweeper is not None:
            self.sweeper.start()
            self.sweeper.send(self.dispatcher.jobs.due())
        self.outbox.start()
        self.alerts.start()
        if self.hl7 is not None:
            self.hl7.start()
        if self.web is not None:
            self.web.start()
        self.intake_service.start()

    def _warm_up(self) -> None:
        try:
            self.runner.warm_up()
        finally:
            self.warmed_up.set()

    def stop(self) -> None:
        """Close the ports first, then let jobs and deliveries in progress finish."""
        self.intake_service.stop_receiving()
        if self.web is not None:
            self.web.stop()
        self.intake_service.intake.stop()
        self.intake_service.watcher.stop()
        self.dispatcher.stop()
        if self.pool is not None:
            self.pool.stop()
        if self.sweeper is not None:
            self.sweeper.stop()
        self.outbox.stop()
        self.alerts.stop()
        if self.hl7 is not None:
            self.hl7.stop()
        self.db.dispose()
