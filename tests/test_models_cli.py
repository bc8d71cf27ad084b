"""``radpilot models add|list|show|set-state`` through Typer's runner, on a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from radpilot.cli import models as models_cli
from radpilot.core.settings import Settings
from radpilot.governance.audit import AuditLog
from radpilot.models.package import ModelPackage
from radpilot.store import Database
from tests import model_factory as mf


def cli() -> typer.Typer:
    """The models sub-app as ``radpilot.cli.main`` registers it."""
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """radpilot (test harness)."""

    app.add_typer(models_cli.app, name="models")
    return app


def run(db: Database, tmp_path: Path, *args: str) -> Result:
    settings = Settings(data_dir=tmp_path / "data", database_url=db.url)
    return CliRunner().invoke(cli(), ["models", *args], obj=settings, env={"COLUMNS": "200"})


@pytest.fixture
def package(tmp_path: Path) -> Path:
    manifest = mf.manifest_dict(
        "chest-xray",
        "classification",
        "torchscript",
        "model.pt",
        ["normal", "pneumonia"],
        [16, 16],
        output={
            "operating_points": [{"name": "screening", "label": "pneumonia", "threshold": 0.3}]
        },
    )
    return mf.package(tmp_path / "pkg", mf.RegionNet(size=(16, 16)), manifest)


def test_add_list_show_set_state(db: Database, tmp_path: Path, package: Path) -> None:
    digest = ModelPackage.open(package).weights_sha256
    added = run(db, tmp_path, "add", str(package), "--by", "alice", "--format", "json")
    assert added.exit_code == 0, added.output
    row = json.loads(added.stdout)
    assert (row["name"], row["version"], row["state"], row["new"]) == (
        "chest-xray",
        "1.0.0",
        "registered",
        True,
    )
    assert row["weights_sha256"] == digest and row["added_by"] == "alice"
    assert (tmp_path / "data" / "models" / "chest-xray" / "1.0.0" / "model.pt").is_file()

    again = run(db, tmp_path, "add", str(package), "--by", "bob")
    assert again.exit_code == 0 and "already registered (same weights)" in again.stdout

    listed = run(db, tmp_path, "list", "--format", "json")
    assert listed.exit_code == 0
    assert [(r["name"], r["state"]) for r in json.loads(listed.stdout)] == [
        ("chest-xray", "registered")
    ]
    table = run(db, tmp_path, "list")
    assert "chest-xray:1.0.0" in table.stdout and digest[:12] in table.stdout

    moved = run(
        db, tmp_path, "set-state", "chest-xray:1.0.0", "SHADOW", "--by", "bob", "--reason", "eval"
    )
    assert moved.exit_code == 0, moved.output
    assert "registered -> shadow" in moved.stdout
    assert "already shadow" in run(db, tmp_path, "set-state", "chest-xray:1.0.0", "shadow").stdout

    shown = run(db, tmp_path, "show", "chest-xray", "--format", "json")
    assert shown.exit_code == 0
    detail = json.loads(shown.stdout)
    assert detail["state"] == "shadow" and detail["state_changed_by"] == "bob"
    assert detail["manifest"]["output"]["operating_points"][0]["threshold"] == 0.3
    assert [(h["kind"], h["actor"]) for h in detail["history"]] == [
        ("model.add", "alice"),
        ("model.state", "bob"),
    ]
    assert detail["history"][1]["reason"] == "eval"
    readable = run(db, tmp_path, "show", "chest-xray:1.0.0")
    assert "registered -> shadow (eval)" in readable.stdout
    assert AuditLog(db).verify().ok


def test_failures_exit_1_with_one_line(db: Database, tmp_path: Path, package: Path) -> None:
    missing = run(db, tmp_path, "show", "nothing")
    assert missing.exit_code == 1
    assert missing.stderr.strip().startswith("radpilot: error: no registered model nothing")
    assert len(missing.stderr.strip().splitlines()) == 1

    (package / "radpilot-model.yaml").write_text(
        (package / "radpilot-model.yaml").read_text().replace("task: classification", "task: x")
    )
    broken = run(db, tmp_path, "add", str(package))
    assert broken.exit_code == 1
    assert "radpilot-model.yaml:" in broken.stderr and "task: Input should be" in broken.stderr


def test_bad_usage_exits_2(db: Database, tmp_path: Path, package: Path) -> None:
    assert run(db, tmp_path, "add", str(package)).exit_code == 0
    bad_state = run(db, tmp_path, "set-state", "chest-xray:1.0.0", "live")
    assert bad_state.exit_code == 2
    no_version = run(db, tmp_path, "set-state", "chest-xray", "active")
    assert no_version.exit_code == 2 and "NAME:VERSION" in no_version.output
    retire = run(db, tmp_path, "set-state", "chest-xray:1.0.0", "retired")
    assert retire.exit_code == 0
    revive = run(db, tmp_path, "set-state", "chest-xray:1.0.0", "active")
    assert revive.exit_code == 1 and "retired is final" in revive.stderr
