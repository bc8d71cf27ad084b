"""The alert rules, evaluated every ``RADPILOT_ALERT_CHECK_SECONDS`` inside ``radpilot
serve`` (``radpilot monitor check`` does one evaluation from cron or by hand)."""

from __future__ import annotations

import logging
import threading

from radpilot.core.errors import RadpilotError
from radpilot.core.settings import Settings
from radpilot.monitoring.alerts import evaluate, load_rules
from radpilot.store import Database

__all__ = ["AlertWatcher"]

log = logging.getLogger(__name__)


class AlertWatcher:
    """A daemon thread; a failing evaluation is logged and tried again next time."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start evaluating (a no-op when the interval is 0)."""
        if self.settings.alert_check_seconds <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="radpilot-alerts", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.alert_check_seconds):
            try:
                rules = load_rules(self.settings.alert_rules_path)
                if rules.models:
                    opened = evaluate(self.db, self.settings, rules)
                    if opened:
                        log.warning("%d new alert(s): %s", len(opened), opened)
            except (RadpilotError, OSError) as exc:
                log.error("alert evaluation failed (%s): %s", type(exc).__name__, exc)
            except Exception:
                log.exception("alert evaluation failed")

    def stop(self) -> None:
        """Stop and wait for an evaluation in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
