"""Persistence: the relational index (SQLAlchemy + Alembic) and the on-disk DICOM archive."""

from radpilot.store import models_alerts as _alert_tables  # noqa: F401 - registers tables
from radpilot.store import models_governance as _governance_tables  # noqa: F401 - registers
from radpilot.store import models_pipeline as _pipeline_tables  # noqa: F401 - registers tables
from radpilot.store import models_users as _user_tables  # noqa: F401
from radpilot.store import models_validation as _validation_tables  # noqa: F401
from radpilot.store.archive import (
    Archive,
    OutOfSpaceError,
    PutOutcome,
    PutResult,
    archive_from_settings,
)
from radpilot.store.db import Database

__all__ = [
    "Archive",
    "Database",
    "OutOfSpaceError",
    "PutOutcome",
    "PutResult",
    "archive_from_settings",
]
