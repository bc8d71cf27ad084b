"""Use cases in the database (SQLite and PostgreSQL): versions kept as written, audited,
refused with the line and key when malformed; validate names a stored one and the report
is kept with the model version."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from radpilot.cli.main import _register, app
from radpilot.core.errors import ConfigurationError
from radpilot.governance.audit import AuditLog
from radpilot.store import Database
from radpilot.store.models_validation import ValidationReportRecord
from radpilot.validation.usecase_store import add_use_case, get_use_case, list_use_cases
from tests.reference_helpers import PACKAGE

ROOT = Path(__file__).resolve().parent.parent
USE_CASE = ROOT / "models" / "reference" / "usecase.yaml"


def test_versions_are_kept_as_written_and_audited(db: Database, tmp_path: Path) -> None:
    first, new = add_use_case(db, USE_CASE, "lead")
    assert new and (first.name, first.version) == ("pneumonia-triage", 1)
    again, new = add_use_case(db, USE_CASE, "someone else")
    assert not new and again.id == first.id
    changed = tmp_path / "usecase.yaml"
    changed.write_text(USE_CASE.read_text().replace("min: 0.80", "min: 0.85"))
    second, new = add_use_case(db, changed, "lead")
    assert new and second.version == 2
    record, case = get_use_case(db, "pneumonia-triage")
    assert record.version == 2 and case.success[2].min == 0.85
    old, old_case = get_use_case(db, "pneumonia-triage", 1)
    assert old.text == USE_CASE.read_text() and old_case.success[2].min == 0.80
    assert [(r.name, r.version) for r in list_use_cases(db)] == [
        ("pneumonia-triage", 1), ("pneumonia-triage", 2),
    ]  # fmt: skip
    added = [e for e in AuditLog(db).entries() if e.kind == "usecase.added"]
    assert [e.subject for e in added] == ["pneumonia-triage:1", "pneumonia-triage:2"]
    with pytest.raises(LookupError, match="no use case 'other'"):
        get_use_case(db, "other")


def test_a_malformed_file_is_refused_naming_line_and_key(db: Database, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(USE_CASE.read_text().replace("prevalence: 0.05", "prevalence: 0.05\nsucess: []"))
    with pytest.raises(ConfigurationError, match=r"bad.yaml:\d+: sucess"):
        add_use_case(db, bad, "lead")
    both = tmp_path / "both.yaml"
    text = USE_CASE.read_text()
    both.write_text(text.replace("{metric: auc, min: 0.95}", "{metric: auc, min: 0.95, max: 1}"))
    with pytest.raises(ConfigurationError, match="exactly one of min and max"):
        add_use_case(db, both, "lead")
    assert list_use_cases(db) == []


def test_validate_names_a_stored_use_case_and_keeps_the_report(tmp_path: Path) -> None:
    _register()
    data = tmp_path / "rp"

    def run(*args: str) -> str:
        result = CliRunner().invoke(app, ["--data-dir", str(data), *args])
        assert result.exit_code == 0, result.output
        return result.output

    assert "pneumonia-triage:1 added" in run("usecases", "add", str(USE_CASE))
    shown = json.loads(run("usecases", "show", "pneumonia-triage"))
    assert shown["version"] == 1 and shown["prevalence"] == 0.05
    run("models", "add", str(PACKAGE))
    results = tmp_path / "results.csv"
    with results.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "score", "label"])
        writer.writerows([f"c{i}", (i % 10) / 10 + 0.05, int(i % 10 >= 4)] for i in range(200))
    out = tmp_path / "report"
    run("validate", "--model", "chest-pneumonia", "--results", str(results),
        "--use-case", "pneumonia-triage:1", "--output", str(out), "--bootstrap", "200")  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"]["use_case"] == "pneumonia-triage"
    db = Database(f"sqlite:///{data / 'radpilot.db'}")
    try:
        with db.session() as session:
            (kept,) = session.scalars(select(ValidationReportRecord)).all()
            assert kept.use_case_pk is not None and kept.cases == 200
            assert kept.verdict == report["verdict"]["verdict"]
            assert (data / kept.path / "report.json").read_bytes() == (
                out / "report.json"
            ).read_bytes()
    finally:
        db.dispose()
    args = ["--data-dir", str(data), "validate", "--model", "chest-pneumonia", "--results",
            str(results), "--use-case", "nothing-like-it", "--output", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "no use case 'nothing-like-it'" in result.output


def test_a_prevalence_of_0_or_1_is_a_usage_error(tmp_path: Path) -> None:
    _register()
    results = tmp_path / "results.csv"
    results.write_text("case_id,score,label\na,0.9,1\nb,0.1,0\n")
    for value in ("0", "1"):
        args = ["--data-dir", str(tmp_path / "rp"), "validate", "--model", "m",
                "--results", str(results), "--output", str(tmp_path / "o"),
                "--prevalence", value]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "strictly between 0 and 1" in result.output
