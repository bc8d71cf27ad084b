"""Logging that never carries patient identifiers.

radpilot's own log lines name instances by :func:`ref`, a short one-way digest of a UID,
and never include patient names, IDs, dates of birth or accession numbers. The database
(which is access-controlled) holds the mapping when someone needs to follow a digest back.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import warnings
from typing import Any

__all__ = ["configure_logging", "ref"]


def ref(uid: str | None) -> str:
    """A short, stable, non-reversible handle for ``uid`` that is safe to log."""
    if not uid:
        return "-"
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()[:12]


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record.

    A handler holding the stream it was created with breaks when that stream is replaced
    and closed (a test runner capturing output, a daemon redirecting it): threads that
    outlive the replacement would log into a closed file.
    """

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: str = "INFO") -> None:
    """Send radpilot's log lines to stderr in one plain format.

    pynetdicom logs dataset contents at DEBUG level (which may include patient data), so
    its logger is capped at WARNING whatever ``level`` is.
    """
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("radpilot")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    # pydicom's reading warnings and log lines name the file path, and paths made by
    # PACS exports often hold patient names. radpilot reports the problems it acts on
    # itself (receipts, summaries), so pydicom's own are kept out of the logs.
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    # dicomweb-client logs failed instances with their SOP Instance UIDs; the outbox
    # records failures itself (deliveries.last_error, audit), without identifiers.
    logging.getLogger("dicomweb_client").setLevel(logging.CRITICAL)
    # Celery and kombu log task arguments (job ids only) at INFO; keep their warnings.
    logging.getLogger("celery").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\..*)?")
