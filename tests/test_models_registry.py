"""The model registry on SQLite and PostgreSQL: versions, immutability, states, audit."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from radpilot.core.errors import ModelError
from radpilot.governance.audit import AuditLog
from radpilot.models.registry import ModelNotFoundError, Registry
from radpilot.store import Database
from radpilot.store.models_pipeline import AuditEntry, ModelState
from tests import model_factory as mf


def build(folder: Path, version: str = "1.0.0", scale: float = 1.0) -> Path:
    """An enhancement package (IntensityMap: weights differ with ``scale``)."""
    manifest = mf.manifest_dict(
        "denoise", "enhancement", "torchscript", "model.pt", ["denoised"], [16, 16]
    )
    manifest["version"] = version
    return mf.package(folder, mf.IntensityMap(scale=scale), manifest)


def audit(db: Database) -> list[tuple[str, str, str, dict[str, Any]]]:
    with db.session() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        return [(r.kind, r.actor, r.subject, r.payload) for r in rows]


def test_add_copies_the_package_and_records_its_hash(db: Database, tmp_path: Path) -> None:
    source = build(tmp_path / "src")
    digest = hashlib.sha256((source / "model.pt").read_bytes()).hexdigest()
    registry = Registry(db, tmp_path / "data" / "models")
    row = registry.add(source, added_by="alice")
    assert (row.name, row.version, row.state) == ("denoise", "1.0.0", ModelState.REGISTERED)
    assert (row.task, row.runtime, row.added_by) == ("enhancement", "torchscript", "alice")
    assert row.weights_sha256 == digest
    assert row.package_path == "models/denoise/1.0.0"
    copied = tmp_path / "data" / "models" / "denoise" / "1.0.0"
    assert (copied / "model.pt").read_bytes() == (source / "model.pt").read_bytes()
    assert row.manifest["name"] == "denoise" and row.manifest["schema"] == "radpilot.model/1"
    assert [e[0] for e in audit(db)] == ["model.add"]
    assert audit(db)[0][3]["weights_sha256"] == digest
    assert not list((tmp_path / "data" / "models").glob(".incoming-*")), "staging left behind"
    package = registry.package_of(row)
    assert package.root == copied and package.weights_sha256 == digest


def test_versions_are_immutable(db: Database, tmp_path: Path) -> None:
    registry = Registry(db, tmp_path / "models")
    source = build(tmp_path / "a")
    first = registry.add(source, "alice")
    again = registry.add(mf.archive(source, tmp_path / "same.tar.gz"), "bob")
    assert again.id == first.id and again.added_by == "alice"
    with pytest.raises(ModelError, match="versions are immutable: bump the version"):
        registry.add(build(tmp_path / "c", scale=2.0), "mallory")
    assert len(registry.list()) == 1
    assert registry.package_of(first).weights_sha256 == first.weights_sha256
    assert [e[0] for e in audit(db)] == ["model.add"]


def test_get_list_and_newest(db: Database, tmp_path: Path) -> None:
    registry = Registry(db, tmp_path / "models")
    one = registry.add(build(tmp_path / "1"), "alice")
    two = registry.add(build(tmp_path / "2", version="2.0.0", scale=0.5), "alice")
    assert [v.label for v in registry.list()] == ["denoise:1.0.0", "denoise:2.0.0"]
    assert registry.get("denoise").id == two.id
    assert registry.get("denoise", "1.0.0").id == one.id
    with pytest.raises(ModelNotFoundError, match="no registered model denoise:9"):
        registry.get("denoise", "9")
    with pytest.raises(ModelNotFoundError, match="radpilot models list"):
        registry.get("nothing")


def test_states_and_their_audit_trail(db: Database, tmp_path: Path) -> None:
    registry = Registry(db, tmp_path / "models")
    row = registry.add(build(tmp_path / "src"), "alice")
    assert registry.runnable() == []
    shadow = registry.set_state("denoise", "1.0.0", "shadow", "bob", reason="evaluate")
    assert shadow.state is ModelState.SHADOW and shadow.state_changed_by == "bob"
    assert [v.id for v in registry.runnable()] == [row.id]
    active = registry.set_state("denoise", "1.0.0", ModelState.ACTIVE, "carol", "approved")
    assert active.state is ModelState.ACTIVE
    assert active.state_changed_at >= shadow.state_changed_at
    same = registry.set_state("denoise", "1.0.0", ModelState.ACTIVE, "carol")
    assert same.state is ModelState.ACTIVE
    registry.set_state("denoise", "1.0.0", ModelState.RETIRED, "dave", "superseded")
    assert registry.runnable() == []
    with pytest.raises(ModelError, match="retired is final"):
        registry.set_state("denoise", "1.0.0", ModelState.ACTIVE, "eve")
    with pytest.raises(ModelError, match="unknown state 'live'"):
        registry.set_state("denoise", "1.0.0", "live", "eve")
    with pytest.raises(ModelNotFoundError):
        registry.set_state("denoise", "7", ModelState.ACTIVE, "eve")
    assert registry.get("denoise", "1.0.0").state is ModelState.RETIRED
    entries = audit(db)
    assert [(kind, actor) for kind, actor, _, _ in entries] == [
        ("model.add", "alice"),
        ("model.state", "bob"),
        ("model.state", "carol"),
        ("model.state", "dave"),
    ]
    assert {subject for _, _, subject, _ in entries} == {"denoise:1.0.0"}
    transitions = [(p["from"], p["to"], p["reason"]) for _, _, _, p in entries[1:]]
    assert transitions == [
        ("registered", "shadow", "evaluate"),
        ("shadow", "active", "approved"),
        ("active", "retired", "superseded"),
    ]
    assert {p["weights_sha256"] for _, _, _, p in entries} == {row.weights_sha256}
    verified = AuditLog(db).verify()
    assert verified.ok and verified.entries == 4


def test_altered_package_is_refused_at_load(db: Database, tmp_path: Path) -> None:
    registry = Registry(db, tmp_path / "models")
    row = registry.add(build(tmp_path / "src"), "alice")
    weights = registry.package_path(row) / "model.pt"
    weights.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="altered after it was registered"):
        registry.package_of(row)
    (weights.parent / "radpilot-model.yaml").unlink()
    weights.unlink()
    weights.parent.rmdir()
    with pytest.raises(ModelError, match=r"package folder .* is missing"):
        registry.package_of(row)


def test_a_broken_package_leaves_nothing(db: Database, tmp_path: Path) -> None:
    source = build(tmp_path / "src")
    (source / "model.pt").unlink()
    registry = Registry(db, tmp_path / "models")
    with pytest.raises(ModelError, match="not in the package"):
        registry.add(source, "alice")
    assert registry.list() == []
    assert list((tmp_path / "models").iterdir()) == []
    assert audit(db) == []
