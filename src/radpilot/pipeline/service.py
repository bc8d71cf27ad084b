"""The long-running intake service that ``radpilot serve`` starts.

It wires the pieces in their order of dependence: database and archive, the intake with
its indexer (and de-identification when configured), the DICOM receiver, and the
study-complete watcher. Later stages subscribe to ``service.bus``.
"""

from __future__ import annotations

import logging

from radpilot.core.errors import ConfigurationError
from radpilot.core.events import EventBus
from radpilot.core.settings import Settings
from radpilot.dicom.intake import Intake
from radpilot.dicom.scp import Receiver
from radpilot.pipeline.completion import StudyCompletionWatcher
from radpilot.store import Database, archive_from_settings

__all__ = ["IntakeService", "build_intake"]

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
        db, archive, bus, deidentifier=deidentifier, quarantine_dir=settings.quarantine_dir
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

    def stop(self) -> None:
        """Close the port, finish indexing what was accepted, stop the watcher."""
        self.receiver.stop()
        self.intake.stop()
        self.watcher.stop()
        self.db.dispose()
