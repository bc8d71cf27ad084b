"""Storage: migrations on SQLite and PostgreSQL, the write-once archive, the index."""

from __future__ import annotations

import hashlib
import random
import threading
from pathlib import Path

import pydicom
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import func, inspect, select

from radpilot.core.errors import StorageError
from radpilot.dicom.index import StoredFile, index_instance, index_instances
from radpilot.dicom.reading import InstanceMeta, extract_meta, identify, parse_bytes, read_values
from radpilot.store import Archive, Database, OutOfSpaceError, PutOutcome
from radpilot.store.models import Base, Instance, Patient, Series, Study
from tests.conftest import pydicom_data_files, recorded_statements


def test_migrations_match_the_models(db: Database) -> None:
    assert db.current_revision() == db.head_revision() is not None
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    tables = set(inspect(db.engine).get_table_names())
    assert {"patients", "studies", "series", "instances", "receipts", "reads"} <= tables


def test_migrate_is_idempotent(db: Database) -> None:
    before = db.current_revision()
    db.migrate()
    assert db.current_revision() == before


@pytest.mark.parametrize(
    "size",
    [1_800, 2 * 1024 * 1024 + 3],  # hashed inline; hashed aside and written in chunks
)
def test_archive_stores_byte_identical_and_never_overwrites(tmp_path: Path, size: int) -> None:
    archive = Archive(tmp_path / "a", fsync=True)
    first = bytes(random.Random(size).getrandbits(8) for _ in range(size))
    stored = archive.put(first, "1.2.3.4")
    assert stored.outcome is PutOutcome.STORED
    assert archive.read_bytes(stored.relative_path) == first
    assert stored.sha256 == hashlib.sha256(first).hexdigest()
    assert (tmp_path / "a" / "pending" / "1.2.3.4.dcm").exists()

    again = archive.put(first, "1.2.3.4")
    assert again.outcome is PutOutcome.DUPLICATE
    other = archive.put(first[:-1] + b"!", "1.2.3.4")
    assert other.outcome is PutOutcome.CONFLICT
    assert archive.read_bytes(stored.relative_path) == first  # the first copy is kept
    assert archive.read_bytes(other.relative_path) == first[:-1] + b"!"  # nothing lost
    assert other.sha256 == hashlib.sha256(first[:-1] + b"!").hexdigest()
    assert not list((tmp_path / "a" / "tmp").iterdir())


def test_archive_race_on_one_uid_stores_exactly_once(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "a", fsync=False)
    outcomes: list[PutOutcome] = []
    barrier = threading.Barrier(8)

    def put(i: int) -> None:
        barrier.wait()
        outcomes.append(archive.put(b"same" if i % 2 else b"different%d" % i, "9.8.7").outcome)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(PutOutcome.STORED) == 1
    assert len(outcomes) == 8


def test_archive_names_unsafe_uids_safely(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "a", fsync=False)
    result = archive.put(b"x", "../../etc/passwd")
    target = (tmp_path / "a" / result.relative_path).resolve()
    assert target.is_relative_to((tmp_path / "a").resolve())
    with pytest.raises(StorageError):
        archive.path("../outside")


def test_archive_refuses_below_free_space_floor(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "a", fsync=False, min_free_bytes=2**62)
    with pytest.raises(OutOfSpaceError, match="free"):
        archive.put(b"x", "1.2")
    assert not archive.contains("1.2")


def test_index_real_files_on_both_backends(db: Database, tmp_path: Path) -> None:
    files = pydicom_data_files()[:25]
    metas = []
    for path in files:
        try:
            metas.append(extract_meta(parse_bytes(path.read_bytes())))
        except ValueError:
            continue
    unique = {m.sop_instance_uid: m for m in metas}
    with db.session() as session:
        for meta in unique.values():
            index_instance(session, meta, StoredFile("x", "0" * 64, 1, "import"))
    with db.session() as session:  # indexing again changes nothing
        for meta in unique.values():
            index_instance(session, meta, StoredFile("x", "0" * 64, 1, "import"))
    with db.session() as session:
        assert session.scalar(select(func.count(Instance.id))) == len(unique)
        assert session.scalar(select(func.count(Study.id))) == len(
            {m.study_instance_uid for m in unique.values()}
        )
        assert session.scalar(select(func.count(Series.id))) == len(
            {m.series_instance_uid for m in unique.values()}
        )
        assert session.scalar(select(func.count(Patient.id))) >= 1
        modalities = set(session.scalars(select(Series.modality)).all())
    assert modalities == {m.values.get("Modality") for m in unique.values()}


def _radiograph_metas(n: int, patients: int) -> list[InstanceMeta]:
    """``n`` single-image studies over ``patients`` patients (pydicom's CT header)."""
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    metas = []
    for i in range(n):
        template.PatientID = f"P{i % patients}"
        template.StudyInstanceUID = generate_uid()
        template.SeriesInstanceUID = generate_uid()
        template.SOPInstanceUID = generate_uid()
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        metas.append(read_values(template, identify(template)))
    return metas


def test_a_batch_costs_a_few_statements_however_many_studies_it_holds(db: Database) -> None:
    first, second = _radiograph_metas(40, patients=10), _radiograph_metas(60, patients=15)
    stored = StoredFile("x", "0" * 64, 1, "dicom")
    with recorded_statements(db.engine) as statements:
        with db.session() as session:
            assert index_instances(session, [(m, stored) for m in first]) == 40
        in_first = len(statements)
        with db.session() as session:  # P0-P9 again, P10-P14 new; the first batch again
            batch = [(m, stored) for m in [*second, *first]]
            assert index_instances(session, batch) == 60
    # Per instance, the former lookups and flushes took several statements each.
    assert in_first <= 12 and len(statements) - in_first <= 12
    with db.session() as session:
        assert session.scalar(select(func.count(Instance.id))) == 100
        assert session.scalar(select(func.count(Study.id))) == 100
        assert session.scalar(select(func.count(Series.id))) == 100
        assert session.scalar(select(func.count(Patient.id))) == 15
        rows = session.execute(
            select(Instance.sop_instance_uid, Series.series_instance_uid, Patient.patient_id)
            .join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id)
            .join(Patient, Study.patient_pk == Patient.id)
        ).all()
    expected = {
        m.sop_instance_uid: (m.series_instance_uid, m.values["PatientID"])
        for m in [*first, *second]
    }
    assert {sop: (series, patient) for sop, series, patient in rows} == expected
