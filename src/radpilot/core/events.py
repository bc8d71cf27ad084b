"""A small registry of named events, in the manner of pynetdicom's ``(evt, handler)`` pairs.

Later stages subscribe to what earlier stages announce (``study.complete`` from the intake,
for example) without the earlier stage importing them.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

__all__ = ["STUDY_COMPLETE", "STUDY_INDEXED", "EventBus", "Handler"]

log = logging.getLogger(__name__)

#: Raised once a study has been quiet for ``Settings.study_quiet_seconds``.
#: Payload: ``study_instance_uid`` (str), ``instances`` (int).
STUDY_COMPLETE = "study.complete"
#: Raised when an instance has been indexed. Payload: ``study_instance_uid``,
#: ``sop_instance_uid``.
STUDY_INDEXED = "instance.indexed"

Handler = Callable[..., None]


class EventBus:
    """Synchronous publish/subscribe between stages.

    A failing handler is logged and does not stop the others, nor the publisher:
    a broken subscriber must never lose an accepted study.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._lock = threading.Lock()

    def subscribe(self, name: str, handler: Handler) -> None:
        """Call ``handler(**payload)`` each time ``name`` is published."""
        with self._lock:
            self._handlers[name].append(handler)

    def unsubscribe(self, name: str, handler: Handler) -> None:
        """Stop calling ``handler`` for ``name``; unknown handlers are ignored."""
        with self._lock:
            if handler in self._handlers[name]:
                self._handlers[name].remove(handler)

    def publish(self, name: str, **payload: Any) -> int:
        """Deliver ``payload`` to every subscriber of ``name``.

        Returns
        -------
        int
            The number of handlers that completed without raising.
        """
        with self._lock:
            handlers = list(self._handlers[name])
        delivered = 0
        for handler in handlers:
            try:
                handler(**payload)
            except Exception:
                log.exception("handler %r for event %s failed", handler, name)
            else:
                delivered += 1
        return delivered
