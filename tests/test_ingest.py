"""`radpilot ingest`: folders, single files, DICOMDIR, zip, non-DICOM, crash recovery."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import func, select

from radpilot.core.settings import load_settings
from radpilot.dicom.ingest import as_part10, ingest_sources
from radpilot.dicom.intake import Arrival, Intake
from radpilot.dicom.sources import collect_sources, count_sources
from radpilot.pipeline.service import build_intake
from radpilot.store import Archive, Database
from radpilot.store.models import Instance, Receipt, ReceiptOutcome
from tests.conftest import pydicom_data_files, shared_data

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
RADPILOT = str(Path(sys.executable).parent / "radpilot")


def run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RADPILOT, "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def intake(tmp_path: Path, db: Database) -> Intake:
    settings = load_settings(data_dir=tmp_path / "data", fsync=False, min_free_disk_mb=0)
    return build_intake(settings, db)


def test_dicomdir_imports_the_files_it_references(intake: Intake) -> None:
    dicomdir = PYDICOM_FILES / "dicomdirtests" / "DICOMDIR"
    sources = list(collect_sources([dicomdir]))
    referenced = [
        r.ReferencedFileID
        for r in pydicom.dcmread(dicomdir).DirectoryRecordSequence
        if "ReferencedFileID" in r
    ]
    assert len(sources) == len(referenced) > 0
    intake.start()
    summary = ingest_sources(sources, intake)
    intake.stop()
    assert summary.imported == len(referenced)
    with intake.db.session() as session:
        assert session.scalar(select(func.count(Instance.id))) == len(referenced)


def test_folder_zip_and_non_dicom(intake: Intake, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    originals = sorted(shared_data("dcm_qa_ts", "In").iterdir())
    for path in originals[:4]:
        shutil.copy(path, folder / "sub" / path.name)
    with zipfile.ZipFile(folder / "more.zip", "w") as archive:
        for path in originals[4:]:
            archive.write(path, f"z/{path.name}")
        archive.writestr("z/readme.txt", "not an image")
    (folder / "notes.txt").write_text("hello")
    (folder / "empty.dcm").write_bytes(b"")
    assert count_sources([folder]) == len(originals) + 3

    intake.start()
    summary = ingest_sources(collect_sources([folder]), intake)
    intake.stop()
    assert summary.imported == len(originals)
    assert summary.skipped == {"not DICOM": 2, "empty file": 1}
    assert not summary.rejected
    # byte-identical: the archive holds each file exactly as it was given
    with intake.db.session() as session:
        stored = {i.sha256 for i in session.scalars(select(Instance))}
    assert stored == {hashlib.sha256(p.read_bytes()).hexdigest() for p in originals}

    intake.start()
    again = ingest_sources(collect_sources([folder]), intake)
    intake.stop()
    assert again.imported == 0
    assert again.duplicates == len(originals)


def test_bare_dataset_without_file_meta_is_wrapped_not_altered(tmp_path: Path) -> None:
    raw = (PYDICOM_FILES / "ExplVR_LitEndNoMeta.dcm").read_bytes()
    wrapped = as_part10(raw)
    assert wrapped is not None and wrapped.endswith(raw)
    ds = pydicom.dcmread(__import__("io").BytesIO(wrapped))
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert as_part10(b"%PDF-1.4 not dicom at all") is None


def test_truncated_file_is_rejected_with_reason(intake: Intake) -> None:
    intake.start()
    result = intake.accept(Arrival((PYDICOM_FILES / "MR_truncated.dcm").read_bytes(), "import"))
    intake.stop()
    assert result.outcome is ReceiptOutcome.REJECTED
    assert result.status == 0xC000
    assert result.reason and "truncated" in result.reason
    with intake.db.session() as session:
        receipt = session.scalars(select(Receipt)).one()
    assert receipt.outcome is ReceiptOutcome.REJECTED and receipt.reason == result.reason


def test_accepted_but_unindexed_files_are_indexed_after_a_crash(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    db.migrate()
    archive = Archive(tmp_path / "archive", fsync=True)
    first = Intake(db, archive)  # never started: its indexer "died" before running
    files = sorted(shared_data("dcm_qa_ts", "In").iterdir())[:3]
    for path in files:
        assert first.accept(Arrival(path.read_bytes(), "import")).status == 0
    with db.session() as session:
        assert session.scalar(select(func.count(Instance.id))) == 0
    assert len(list(archive.pending())) == 3

    second = Intake(db, Archive(tmp_path / "archive"))
    second.start()
    second.stop()
    with db.session() as session:
        paths = list(session.scalars(select(Instance.file_path)))
    assert len(paths) == 3
    assert not list(archive.pending())
    assert {archive.read_bytes(p) for p in paths} == {p.read_bytes() for p in files}


def test_cli_ingest_summary_and_exit_codes(tmp_path: Path) -> None:
    files = pydicom_data_files()[:20]
    result = run_cli("ingest", "--format", "json", *map(str, files), data_dir=tmp_path / "d")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["seen"] == len(files)
    assert summary["imported"] + summary["duplicates"] + summary["conflicts"] + summary[
        "rejected"
    ] + summary["skipped"] == len(files)
    assert summary["imported"] > 10

    missing = run_cli("ingest", str(tmp_path / "nope"), data_dir=tmp_path / "d")
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr and len(missing.stderr.splitlines()) == 1
    bad_usage = run_cli("ingest", "--format", "xml", str(files[0]), data_dir=tmp_path / "d")
    assert bad_usage.returncode == 2
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 64)
    rejected_only = run_cli("ingest", str(junk), data_dir=tmp_path / "e")
    assert rejected_only.returncode == 1
