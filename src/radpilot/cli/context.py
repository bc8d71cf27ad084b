"""What every sub-command shares: settings from the global options, and exit codes.

Exit status: 0 success, 1 failure (one line on stderr), 2 bad usage (Typer's own).
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from sqlalchemy.exc import SQLAlchemyError

from radpilot.core.errors import ConfigurationError, RadpilotError
from radpilot.core.settings import Settings, load_settings
from radpilot.store import Database

__all__ = [
    "fail",
    "open_database",
    "reporting_errors",
    "settings_of",
    "with_overrides",
]


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the global options built, stored on the root context."""
    root = ctx.find_root()
    settings = root.obj
    if not isinstance(settings, Settings):
        settings = load_settings()
        root.obj = settings
    return settings


def with_overrides(settings: Settings, **overrides: Any) -> Settings:
    """A validated copy of ``settings`` with command options applied.

    Raises
    ------
    ConfigurationError
        If an option value is invalid.
    """
    try:
        return Settings.model_validate({**settings.model_dump(), **overrides})
    except ValueError as exc:
        raise ConfigurationError(f"invalid option: {exc}") from exc


def open_database(settings: Settings) -> Database:
    """The installation's database, migrated to the current schema."""
    db = Database(settings.effective_database_url)
    db.migrate()
    return db


def fail(message: str) -> NoReturn:
    """Print a one-line reason on stderr and exit with status 1."""
    print(f"radpilot: error: {message}", file=sys.stderr)
    raise typer.Exit(code=1)


@contextmanager
def reporting_errors() -> Iterator[None]:
    """Turn radpilot's own errors into a one-line message and exit status 1."""
    try:
        yield
    except RadpilotError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.strerror or exc} ({Path(exc.filename).name if exc.filename else 'I/O'})")


def current_user() -> str:
    """The login name, for ``added_by`` and audit entries (``unknown`` where there is none)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "unknown"


@contextmanager
def database(ctx: typer.Context) -> Iterator[Database]:
    """The installation's migrated database for one command; radpilot's own errors and an
    unusable database end the command with one line and status 1."""
    settings = settings_of(ctx)
    with reporting_errors():
        try:
            db = open_database(settings)
            try:
                yield db
            finally:
                db.dispose()
        except SQLAlchemyError as exc:
            fail(
                f"the database could not be used ({type(exc).__name__}); check "
                "RADPILOT_DATABASE_URL and that the server is reachable"
            )
