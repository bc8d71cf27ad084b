"""Shared fixtures: pydicom configuration, databases (SQLite and PostgreSQL), peers, data.

Peers that are not installed (PostgreSQL, dcmtk, Orthanc) make their tests skip with the
reason shown, unless ``RADPILOT_REQUIRE_SERVICES=1`` (as in CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom import config as pydicom_config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from radpilot.dicom.reading import configure_pydicom
from radpilot.store import Database

REQUIRE_SERVICES = os.environ.get("RADPILOT_REQUIRE_SERVICES") == "1"
POSTGRES_URL = os.environ.get(
    "RADPILOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SHARED_DATA = Path(
    os.environ.get("RADPILOT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def missing(reason: str) -> None:
    """Skip (locally) or fail (in CI) because a peer or data set is absent."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required by RADPILOT_REQUIRE_SERVICES=1: {reason}")
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """The path of a command-line peer (dcmtk, Orthanc), or skip/fail."""
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if path is None:
        missing(f"{name} is not installed (apt-get install -y dcmtk orthanc)")
    assert path is not None
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at the time of asking."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _pydicom_settings() -> Iterator[None]:
    """Read tolerantly as the CLI does, and restore pydicom's global settings after."""
    saved = pydicom_config.settings.reading_validation_mode
    saved_writing = pydicom_config.settings.writing_validation_mode
    configure_pydicom()
    yield
    pydicom_config.settings.reading_validation_mode = saved
    pydicom_config.settings.writing_validation_mode = saved_writing


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test session, dropped at the end."""
    admin_url = make_url(POSTGRES_URL).set(database="postgres")
    name = f"radpilot_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "not reachable"
        missing(f"PostgreSQL not reachable at {POSTGRES_URL}: {type(exc).__name__}")
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated-from-empty database on each backend; PostgreSQL gets a fresh schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'radpilot.db'}"
        return
    base = request.getfixturevalue("postgres_url")
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    yield base


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated :class:`Database` on SQLite and on PostgreSQL."""
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


def pydicom_data_files() -> list[Path]:
    """Every file of the ``pydicom-data`` package (68 real files, many vendors/codecs)."""
    # Read the package folder directly: pydicom.data.get_testdata_files() would try to
    # download files that are not installed, and there is no internet here.
    try:
        import data_store  # the import name of the pydicom-data package
    except ImportError:
        missing("pip install pydicom-data (68 real DICOM files) is needed")
    folder = Path(data_store.__file__).parent / "data"
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".dcm")
    if len(files) < 60:
        missing("pip install pydicom-data (68 real DICOM files) is needed")
    return files


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip/fail when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        missing(f"{path} is missing (the shared data folder, see its README)")
    return path


__all__ = ["free_port", "missing", "pydicom", "pydicom_data_files", "require_tool", "shared_data"]


@contextmanager
def recorded_statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements ``engine`` sends to the database inside the ``with`` block."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)
