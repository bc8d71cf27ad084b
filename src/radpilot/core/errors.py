"""Exceptions raised across radpilot.

Every message should say what went wrong *and* how to fix it (see pydicom's
``InvalidDicomError``), and must never contain patient identifiers.
"""


class RadpilotError(Exception):
    """Base class of all errors radpilot raises on purpose."""


class ConfigurationError(RadpilotError):
    """A setting is missing or invalid."""


class StorageError(RadpilotError):
    """The archive or database could not complete an operation."""


class DuplicateInstanceError(StorageError):
    """An instance with this SOP Instance UID is already in the archive."""
