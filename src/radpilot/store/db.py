"""Engines, sessions and schema migrations.

SQLite (in the data dir) is the embedded default; PostgreSQL is used when
``RADPILOT_DATABASE_URL`` names it. The schema is always created by Alembic, never by
``create_all``, so that an installation can be upgraded in place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from radpilot.core.errors import ConfigurationError

__all__ = ["Database", "alembic_config"]


def alembic_config(url: str) -> Config:
    """An Alembic configuration pointing at radpilot's bundled migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("radpilot.store") / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    """One database: its engine, its session factory and its migrations.

    Parameters
    ----------
    url
        A SQLAlchemy URL (``sqlite:///...`` or ``postgresql+psycopg://...``).
    """

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except Exception as exc:  # SQLAlchemy raises ArgumentError, sometimes ValueError
            raise ConfigurationError(
                f"database URL is not valid ({exc}); write e.g. "
                "postgresql+psycopg://user@host/db or sqlite:///path/radpilot.db"
            ) from exc
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite and parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, pool_pre_ping=not self.is_sqlite)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Bring the schema to the newest revision (a no-op when it is current)."""
        if self.current_revision() == self.head_revision():
            return
        cfg = alembic_config(self.url)
        with self.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

    def current_revision(self) -> str | None:
        """The revision the database is at, or ``None`` for an empty database."""
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def head_revision(self) -> str | None:
        """The newest revision shipped with this radpilot."""
        return ScriptDirectory.from_config(alembic_config(self.url)).get_current_head()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
