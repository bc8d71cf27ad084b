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


class ManifestError(ConfigurationError):
    """A model manifest or routing rules file is invalid; the message names line and field."""


class ModelError(RadpilotError):
    """A model could not be loaded or its output is unusable (raised, NaN, wrong shape)."""


class ModelTimeoutError(ModelError):
    """A model call took longer than ``Settings.job_timeout_seconds``."""


class DeliveryError(RadpilotError):
    """A destination refused an object or could not be reached."""
