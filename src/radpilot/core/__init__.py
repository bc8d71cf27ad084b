"""Settings, errors, events and PHI-free logging shared by every stage."""

from radpilot.core.errors import ConfigurationError, RadpilotError
from radpilot.core.events import EventBus
from radpilot.core.settings import Settings, load_settings

__all__ = ["ConfigurationError", "EventBus", "RadpilotError", "Settings", "load_settings"]
