"""A real index built from real DICOM files, for the inventory and labels tests.

The files are pydicom's own test files plus the ``pydicom-data`` package (many vendors,
modalities and transfer syntaxes, and a few broken files). They are found on disk without
``get_testdata_files("*")``, which tries to download pydicom's online files and stalls for
minutes where the network is closed. ``pydicom-data`` files are checked against the
SHA-256 list that pydicom ships.

:func:`build_index` files them the way intake does: parse, extract, index; a refused file
becomes a ``rejected`` receipt with intake's reason, a second copy of a SOP Instance UID a
``duplicate`` (same bytes) or ``conflict`` (different bytes) receipt. :func:`run_cli` runs
the ``inventory`` and ``labels`` commands as ``radpilot.cli.main`` registers them.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import pydicom
import pydicom.data
import typer
from pydicom.dataset import Dataset
from typer.testing import CliRunner, Result

from radpilot.cli import inventory as inventory_cli
from radpilot.cli import labels as labels_cli
from radpilot.core.settings import Settings
from radpilot.dicom.index import StoredFile, index_instance
from radpilot.dicom.reading import InstanceMeta, InvalidInstanceError, extract_meta, parse_bytes
from radpilot.store import Database
from radpilot.store.models import Receipt, ReceiptOutcome
from tests.conftest import missing

__all__ = ["BuiltIndex", "build_index", "cli", "real_dicom_files", "run_cli"]

T = TypeVar("T")
PYDICOM_DATA = Path(pydicom.data.__file__).parent


def real_dicom_files() -> list[Path]:
    """pydicom's bundled test files and the hash-checked ``pydicom-data`` files."""
    bundled = sorted((PYDICOM_DATA / "test_files").glob("*.dcm"))
    try:
        import data_store  # the import name of the pydicom-data package
    except ImportError:
        missing("pip install pydicom-data (68 real DICOM files) is needed")
    store = sorted((Path(data_store.__file__).parent / "data").glob("*.dcm"))
    if len(store) < 60:
        missing("pydicom-data looks incomplete (fewer than 60 files)")
    hashes = json.loads((PYDICOM_DATA / "hashes.json").read_text())
    for path in store:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert hashes.get(path.name) == digest, f"{path.name} differs from pydicom's hash"
    return bundled + store


@dataclass
class BuiltIndex:
    """What :func:`build_index` filed, for computing expectations independently."""

    accepted: dict[str, tuple[Path, bytes]] = field(default_factory=dict)  # by SOP UID
    rejected: dict[Path, str] = field(default_factory=dict)  # path -> intake's reason
    duplicates: list[Path] = field(default_factory=list)
    conflicts: list[Path] = field(default_factory=list)

    def datasets(self) -> list[Dataset]:
        """Accepted files read with plain pydicom, in the order they were indexed."""
        return [_lenient(partial(pydicom.dcmread, path)) for path, _ in self.accepted.values()]


def _meta_of(data: bytes) -> InstanceMeta:
    return extract_meta(parse_bytes(data))


def _lenient(read: Callable[[], T]) -> T:
    """Run ``read`` letting pydicom warn (as in production) without failing the test.

    pytest turns warnings into errors; pydicom warns about files it reads anyway (e.g.
    implicit VR where explicit was announced), and intake accepts those files.
    """
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        return read()


def build_index(db: Database, files: list[Path]) -> BuiltIndex:
    """Index ``files`` into ``db`` as ``radpilot ingest`` would, with receipts."""
    built = BuiltIndex()
    with db.session() as session:
        for path in files:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            receipt = Receipt(source="import", origin=str(path), sha256=digest)
            try:
                meta = _lenient(partial(_meta_of, data))
            except InvalidInstanceError as exc:
                receipt.outcome, receipt.reason = ReceiptOutcome.REJECTED, exc.reason
                built.rejected[path] = exc.reason
                session.add(receipt)
                continue
            receipt.sop_instance_uid = meta.sop_instance_uid
            receipt.study_instance_uid = meta.study_instance_uid
            if meta.sop_instance_uid in built.accepted:
                same = built.accepted[meta.sop_instance_uid][1] == data
                receipt.outcome = ReceiptOutcome.DUPLICATE if same else ReceiptOutcome.CONFLICT
                (built.duplicates if same else built.conflicts).append(path)
            else:
                stored = StoredFile(
                    relative_path=f"instances/{digest[:2]}/{digest}.dcm",
                    sha256=digest,
                    size=len(data),
                    source="import",
                )
                index_instance(session, meta, stored)
                receipt.outcome = ReceiptOutcome.STORED
                built.accepted[meta.sop_instance_uid] = (path, data)
            session.add(receipt)
    return built


def cli() -> typer.Typer:
    """The two commands under test, as ``radpilot.cli.main`` registers them."""
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """radpilot (test harness)."""

    app.command("inventory")(inventory_cli.inventory)
    app.add_typer(labels_cli.app, name="labels")
    return app


def run_cli(db_url: str, tmp_path: Path, *args: str) -> Result:
    """Run ``radpilot ARGS`` on the database at ``db_url``, data dir under ``tmp_path``."""
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url)
    return CliRunner().invoke(cli(), list(args), obj=settings)
