"""``radpilot labels import``: reads from several readers per study, on a real index.

Runs on SQLite and PostgreSQL (the ``db`` fixture). The studies come from real DICOM files
indexed as intake does (tests/helpers_index.py); the CSV files are written here.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from typer.testing import Result

from radpilot.data import build_inventory
from radpilot.data.labels_csv import normalise_finding, parse_binary, parse_read_at
from radpilot.store import Database
from radpilot.store.models import CaseAttribute, Patient, Read, Study
from tests.helpers_index import build_index, real_dicom_files, run_cli

UTC = dt.UTC
UNKNOWN_UID = "1.2.826.0.1.3680043.99999.424242"


@pytest.fixture
def studies(db: Database) -> dict[str, Any]:
    """Three indexed studies (A and B with unique accession numbers, C) and a patient P
    with exactly one study."""
    build_index(db, real_dicom_files())
    with db.session() as session:
        rows = session.execute(
            select(Study.id, Study.study_instance_uid, Study.accession_number,
                   Patient.patient_id, Patient.id)
            .join(Patient, Study.patient_pk == Patient.id)
            .order_by(Study.id)
        ).all()  # fmt: skip
    accessions = [r[2] for r in rows]
    with_accession = [r for r in rows if r[2] and accessions.count(r[2]) == 1]
    per_patient = [r[3] for r in rows]
    single = [r for r in rows if len(r[3]) >= 3 and per_patient.count(r[3]) == 1]
    a, b = with_accession[0], with_accession[1]
    p = next(r for r in reversed(single) if r[0] not in (a[0], b[0]))
    c = next(r for r in rows if r[0] not in (a[0], b[0], p[0]))
    return {
        "A": a[1], "A_pk": a[0], "A_acc": a[2], "B": b[1], "B_pk": b[0], "B_acc": b[2], "C": c[1],
        "P": p[3], "P_pk": p[0], "P_patient_pk": p[4], "db": db,
    }  # fmt: skip


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def labels_cli(db: Database, tmp_path: Path, *args: str) -> Result:
    return run_cli(db.url, tmp_path, "labels", "import", *args)


def reads_of(db: Database, study_pk: int) -> set[tuple[str, int, str, dt.datetime | None]]:
    def utc(value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None  # SQLite gives naive UTC, PostgreSQL aware times
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    with db.session() as session:
        reads = session.scalars(select(Read).where(Read.study_pk == study_pk)).all()
        return {(r.finding, r.value, r.reader, utc(r.read_at)) for r in reads}


def attributes_of(db: Database, study_pk: int) -> dict[str, str | None]:
    with db.session() as session:
        rows = session.scalars(select(CaseAttribute).where(CaseAttribute.study_pk == study_pk))
        return {a.name: a.value for a in rows}


def count_reads(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count(Read.id))) or 0)


def test_import_several_readers_reference_and_attributes(
    studies: dict[str, Any], tmp_path: Path
) -> None:
    db, s = studies["db"], studies
    csv_text = (
        "study_instance_uid,accession_number,label,reader,read_at,site,split\n"
        f"{s['A']},,1,dr_a,2024-03-01T10:00:00+01:00,north,train\n"
        f"{s['A']},,0,dr_b,2024-03-02 09:30,north,train\n"
        f"{s['A']},,Pneumothorax,,,north,train\n"
        f",{s['B_acc']},normal,,,south,test\n"
        f"{UNKNOWN_UID},,1,,,north,train\n"
        f"{s['C']},,2,,,north,train\n"
        f"{s['C']},,1,dr_a,yesterday,,\n"
    )
    path = write(tmp_path, "reads.csv", csv_text)
    args = (str(path), "--finding", "nodule", "--timezone", "Europe/Berlin", "--format", "json")
    result = labels_cli(db, tmp_path, *args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["rows"], summary["imported"], summary["already_present"]) == (7, 4, 0)
    assert (summary["unmatched"], summary["invalid"], summary["studies"]) == (1, 2, 2)
    assert summary["committed"] is True
    assert [(i["row"], i["kind"]) for i in summary["issues"]] == [
        (6, "unmatched"), (7, "invalid"), (8, "invalid")
    ]  # fmt: skip
    assert "study_instance_uid" in summary["issues"][0]["reason"]
    assert "label" in summary["issues"][1]["reason"]
    assert "read_at" in summary["issues"][2]["reason"]
    assert summary["readers"] == {"dr_a": 1, "dr_b": 1, "reference": 2}
    assert summary["by_finding"] == {"nodule": 3, "pneumothorax": 1}

    assert reads_of(db, s["A_pk"]) == {
        ("nodule", 1, "dr_a", dt.datetime(2024, 3, 1, 9, 0, tzinfo=UTC)),
        ("nodule", 0, "dr_b", dt.datetime(2024, 3, 2, 8, 30, tzinfo=UTC)),  # Berlin, CET
        ("pneumothorax", 1, "reference", None),
    }
    assert reads_of(db, s["B_pk"]) == {("nodule", 0, "reference", None)}
    with db.session() as session:
        read = session.scalars(select(Read).where(Read.reader == "dr_b")).one()
        assert (read.source_file, read.attributes) == ("reads.csv", {"site": "north",
                                                                     "split": "train"})  # fmt: skip
    assert attributes_of(db, s["A_pk"]) == {"site": "north", "split": "train"}
    assert attributes_of(db, s["B_pk"]) == {"site": "south", "split": "test"}

    # the same file again adds nothing
    again = json.loads(labels_cli(db, tmp_path, *args).stdout)
    assert (again["imported"], again["already_present"], again["attributes_set"]) == (0, 4, 0)
    assert [i["row"] for i in again["issues"]] == [6, 7, 8]
    assert count_reads(db) == 4

    # the inventory counts them
    with db.session() as session:
        labels = build_inventory(session)["labels"]
    assert (labels["studies_with_labels"], labels["reads"], labels["readers"]) == (2, 4, 3)
    nodule = next(f for f in labels["by_finding"] if f["finding"] == "nodule")
    assert (nodule["studies"], nodule["reads"], nodule["positive_reads"]) == (2, 3, 1)
    assert {a["name"]: a["studies"] for a in labels["case_attributes"]} == {"site": 2, "split": 2}

    table = labels_cli(db, tmp_path, str(path), "--finding", "nodule").stdout
    assert "already present" in table and "rows not imported" in table
    for identifier in (s["A"], s["A_acc"], s["B"], s["B_acc"], s["C"], UNKNOWN_UID):
        assert identifier not in table and identifier not in result.stdout


def test_conflicts_updates_strict_and_dry_run(studies: dict[str, Any], tmp_path: Path) -> None:
    db, s = studies["db"], studies
    header = "study_instance_uid,label,reader,read_at,site\n"
    first = write(tmp_path, "a.csv", header + f"{s['A']},1,dr_a,2024-01-05T08:00Z,north\n")
    assert labels_cli(db, tmp_path, str(first)).exit_code == 0

    clash = write(tmp_path, "b.csv", header + f"{s['A']},0,dr_a,2024-01-05T08:00Z,east\n"
                  f"{s['B']},yes,dr_a,2024-01-05T08:00Z,west\n")  # fmt: skip
    result = labels_cli(db, tmp_path, str(clash), "--format", "json")
    summary = json.loads(result.stdout)
    assert result.exit_code == 0
    assert (summary["imported"], summary["conflicts"]) == (1, 1)
    assert (
        summary["issues"][0]["row"] == 2 and "never overwritten" in summary["issues"][0]["reason"]
    )
    assert reads_of(db, s["A_pk"]) == {
        ("finding", 1, "dr_a", dt.datetime(2024, 1, 5, 8, tzinfo=UTC))
    }
    assert attributes_of(db, s["A_pk"]) == {"site": "north"}  # the conflicting row's is not kept

    update = write(tmp_path, "c.csv", header + f"{s['A']},1,dr_c,,east\n")
    summary = json.loads(labels_cli(db, tmp_path, str(update), "--format", "json").stdout)
    assert (summary["imported"], summary["attributes_updated"]) == (1, 1)
    assert attributes_of(db, s["A_pk"]) == {"site": "east"}

    before = count_reads(db)
    mixed = write(tmp_path, "d.csv", header + f"{s['C']},1,dr_d,,x\n{s['C']},maybe,dr_d,,x\n")
    result = labels_cli(db, tmp_path, str(mixed), "--strict", "--format", "json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert (summary["committed"], summary["imported"], summary["would_import"]) == (False, 0, 1)
    good = write(tmp_path, "e.csv", header + f"{s['C']},1,dr_d,,x\n")
    result = labels_cli(db, tmp_path, str(good), "--dry-run", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["would_import"] == 1
    assert count_reads(db) == before and attributes_of(db, studies["A_pk"]) == {"site": "east"}


def test_matching_by_patient_and_accession(studies: dict[str, Any], tmp_path: Path) -> None:
    db, s = studies["db"], studies
    by_patient = write(tmp_path, "p.csv", f"patient_id,label\n{s['P']},1\n")
    summary = json.loads(labels_cli(db, tmp_path, str(by_patient), "--format", "json").stdout)
    assert summary["imported"] == 1 and reads_of(db, s["P_pk"])

    with db.session() as session:  # a second study of P, and a second owner of B's accession
        session.add(Study(study_instance_uid="2.25.1001", patient_pk=s["P_patient_pk"],
                          study_date="19990101"))  # fmt: skip
        session.add(Study(study_instance_uid="2.25.1002", patient_pk=s["P_patient_pk"],
                          accession_number=s["B_acc"]))  # fmt: skip
    rows = (
        "patient_id,accession_number,study_instance_uid,study_date,label,reader\n"
        f"{s['P']},,,,1,r2\n"
        f"{s['P']},,,1999-01-01,1,r2\n"
        f",{s['B_acc']},,,1,r2\n"
        f",{s['B_acc']},{s['A']},,1,r2\n"
    )
    result = labels_cli(db, tmp_path, str(write(tmp_path, "q.csv", rows)), "--format", "json")
    summary = json.loads(result.stdout)
    assert [(i["row"], i["kind"]) for i in summary["issues"]] == [
        (2, "ambiguous"), (4, "ambiguous"), (5, "invalid")
    ]  # fmt: skip
    assert "study_date" in summary["issues"][0]["reason"]
    assert "accession_number" in summary["issues"][2]["reason"]
    assert summary["imported"] == 1
    with db.session() as session:
        dated = session.scalars(select(Study.id).where(Study.study_instance_uid == "2.25.1001"))
        assert reads_of(db, dated.one()) == {("finding", 1, "r2", None)}
    for identifier in (s["P"], s["B_acc"], s["A"]):
        assert identifier not in result.stdout


def test_file_problems(studies: dict[str, Any], tmp_path: Path) -> None:
    db, s = studies["db"], studies
    no_id = write(tmp_path, "n.csv", "id,label\nx,1\n")
    result = labels_cli(db, tmp_path, str(no_id))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "radpilot: error: n.csv has no study_instance_uid, accession_number or patient_id "
        "column (found: id, label)"
    ]
    latin = write(
        tmp_path, "l.csv", "study_instance_uid,label,comment\nx,1,b\xe9b\xe9\n", "latin-1"
    )
    result = labels_cli(db, tmp_path, str(latin))
    assert result.exit_code == 1 and "not UTF-8" in result.stderr
    assert labels_cli(db, tmp_path, str(tmp_path / "absent.csv")).exit_code == 2
    assert labels_cli(db, tmp_path, str(no_id), "--timezone", "Mars/Olympus").exit_code == 2

    excel = write(tmp_path, "x.csv", "\ufeffStudy Instance UID;Label;Patient Name;Site\n"
                  f"{s['A']};1;DOE^JANE;north\n")  # fmt: skip
    summary = json.loads(labels_cli(db, tmp_path, str(excel), "--format", "json").stdout)
    assert (summary["imported"], summary["ignored_columns"]) == (1, ["Patient Name"])
    assert attributes_of(db, s["A_pk"]) == {"Site": "north"}
    with db.session() as session:
        assert "DOE" not in json.dumps([r.attributes for r in session.scalars(select(Read))])


def test_cell_parsers() -> None:
    assert [parse_binary(t) for t in ("1", "Yes", "positive", "0", "FALSE", "absent")] == [
        1, 1, 1, 0, 0, 0
    ]  # fmt: skip
    assert parse_binary("0.7") is None and parse_binary("nodule") is None
    assert normalise_finding("  Pleural   Effusion ") == "pleural_effusion"
    berlin = __import__("zoneinfo").ZoneInfo("Europe/Berlin")
    assert parse_read_at("2024-07-01 12:00", berlin) == dt.datetime(2024, 7, 1, 10, tzinfo=UTC)
    assert parse_read_at("2024-07-01T12:00Z", berlin) == dt.datetime(2024, 7, 1, 12, tzinfo=UTC)
    assert parse_read_at("20240701", UTC) == dt.datetime(2024, 7, 1, tzinfo=UTC)
    assert parse_read_at("20240701123000", UTC) == dt.datetime(2024, 7, 1, 12, 30, tzinfo=UTC)


@given(st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1),
                    timezones=st.timezones()))  # fmt: skip
def test_read_times_keep_their_instant(moment: dt.datetime) -> None:
    # compared as naive UTC: aware times in a DST gap never compare equal across zones
    offset = moment.utcoffset()
    assert offset is not None
    parsed = parse_read_at(moment.isoformat(), UTC)
    assert parsed.tzinfo is UTC
    assert parsed.replace(tzinfo=None) == moment.replace(tzinfo=None) - offset
