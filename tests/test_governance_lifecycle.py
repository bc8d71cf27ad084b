"""Model lifecycle through the web API (issue 7): registered -> shadow -> pilot -> active
only with an attached validation report and the required approvals; refusals answered
with the reason and audited; the whole history in the verified audit chain."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.exceptions import StarletteDeprecationWarning

from radpilot.core.settings import Settings
from radpilot.governance.audit import AuditLog
from radpilot.models.registry import Registry
from radpilot.store import Database
from radpilot.store.models_pipeline import AuditEntry, ModelState, ModelVersion
from radpilot.store.models_users import Role
from radpilot.store.models_validation import ValidationReportRecord
from radpilot.web import accounts

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx`", category=StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "long enough password"  # noqa: S105 - the test users' password
USERS = {"gov1": Role.GOVERNANCE, "gov2": Role.GOVERNANCE, "gov3": Role.GOVERNANCE,
         "boss": Role.ADMIN, "rad": Role.RADIOLOGIST}  # fmt: skip


@pytest.fixture
def world(db: Database, tmp_path: Path) -> Iterator[dict[str, Any]]:
    from radpilot.web.app import create_app

    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, database_url=db.url, governance="governed")
    version = Registry(db, settings.models_dir).add(REPO / "models/reference/package", "test")
    tokens = {}
    for name, role in USERS.items():
        accounts.add_user(db, name, PASSWORD, role, actor="test")
        tokens[name] = {
            "Authorization": f"Bearer {accounts.issue_token(db, name, 't', actor='test')}"
        }
    with TestClient(create_app(settings, db)) as client:
        yield {"db": db, "client": client, "as": tokens, "model": version, "settings": settings}


def state(db: Database, model: ModelVersion) -> ModelState:
    with db.session() as session:
        row = session.get(ModelVersion, model.id)
        assert row is not None
        return row.state


def test_registered_to_active_needs_report_and_approvals(world: dict[str, Any]) -> None:
    db, c, who, model = world["db"], world["client"], world["as"], world["model"]
    base = f"/api/governance/models/{model.name}/{model.version}/transitions"

    def request(actor: str, to: str, reason: str = "planned") -> Any:
        return c.post(base, json={"to": to, "reason": reason}, headers=who[actor])

    def vote(actor: str, tid: int, verb: str = "approve") -> Any:
        return c.post(f"/api/governance/transitions/{tid}/{verb}", json={"comment": "ok"},
                      headers=who[actor])  # fmt: skip

    skip = request("gov1", "active")
    assert skip.status_code == 409 and "registered -> active is not a transition" in skip.text
    assert request("rad", "shadow").status_code == 403  # a radiologist cannot request
    direct = c.post(f"/api/admin/models/{model.name}/{model.version}/state",
                    json={"to": "active", "reason": "now"}, headers=who["boss"])  # fmt: skip
    assert direct.status_code == 409 and "governed" in direct.text
    assert state(db, model) is ModelState.REGISTERED

    shadow = request("gov1", "shadow", "run beside the current model")
    assert shadow.status_code == 201 and shadow.json()["approvals_needed"] == 1
    tid = shadow.json()["id"]
    own = vote("gov1", tid)
    assert own.status_code == 409 and "cannot approve their own" in own.text
    assert vote("rad", tid).status_code == 403
    done = vote("boss", tid)  # an admin may approve shadow
    assert done.status_code == 200 and done.json()["status"] == "applied"
    assert state(db, model) is ModelState.SHADOW

    no_report = request("gov1", "pilot")
    assert no_report.status_code == 409 and "no validation report" in no_report.text
    with db.session() as session:
        session.add(ValidationReportRecord(
            model_version_pk=model.id, path="validation/ref", sha256="0" * 64, cases=624,
            excluded=0, verdict="PASS", created_by="test",
        ))  # fmt: skip
        session.commit()
    pilot = request("gov1", "pilot", "validation attached")
    assert pilot.status_code == 201
    assert request("gov2", "pilot").status_code == 409  # one pending request at a time
    assert vote("gov2", pilot.json()["id"]).json()["status"] == "applied"
    assert state(db, model) is ModelState.PILOT

    active = request("gov1", "active", "pilot went well")
    assert active.json()["approvals_needed"] == 2
    tid = active.json()["id"]
    first = vote("gov2", tid)
    assert first.json()["status"] == "pending" and state(db, model) is ModelState.PILOT
    assert vote("gov2", tid).status_code == 409  # the same person twice
    assert vote("boss", tid).status_code == 403  # active needs governance members
    second = vote("gov3", tid)
    assert second.json()["status"] == "applied"
    assert [a["approver"] for a in second.json()["approvals"]] == ["gov2", "gov3"]
    assert state(db, model) is ModelState.ACTIVE

    suspend = request("boss", "suspended", "incident 12: missed findings")
    assert suspend.json()["status"] == "applied"  # the safety action needs no wait
    assert state(db, model) is ModelState.SUSPENDED
    back = request("gov1", "active", "fixed")
    rejected = vote("gov2", back.json()["id"], "reject")
    assert rejected.json()["status"] == "rejected" and state(db, model) is ModelState.SUSPENDED

    assert AuditLog(db).verify().ok
    with db.session() as session:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
    changes = [(e.payload["from"], e.payload["to"]) for e in entries if e.kind == "model.state"]
    assert changes == [("registered", "shadow"), ("shadow", "pilot"), ("pilot", "active"),
                       ("active", "suspended")]  # fmt: skip
    approved = [e for e in entries if e.kind == "model.state"][2].payload["approval"]
    assert approved == f"transition {tid}, approved by gov2, gov3"
    refused = [e for e in entries if e.kind == "model.transition.refused"]
    reasons = " | ".join(e.payload["reason"] for e in refused)
    for words in (
        "registered -> active",
        "needs the governance or admin role",
        "governed",
        "cannot approve their own",
        "no validation report",
        "already decided",
    ):
        assert words in reasons, words
    listed = c.get("/api/governance/transitions?status=applied", headers=who["rad"]).json()
    assert len(listed) == 4


def test_embedded_mode_lets_an_admin_act_directly(db: Database, tmp_path: Path) -> None:
    from radpilot.web.app import create_app

    settings = Settings(data_dir=tmp_path / "data", database_url=db.url)
    model = Registry(db, settings.models_dir).add(REPO / "models/reference/package", "test")
    accounts.add_user(db, "boss", PASSWORD, Role.ADMIN, actor="test")
    accounts.add_user(db, "gov", PASSWORD, Role.GOVERNANCE, actor="test")
    boss = {"Authorization": f"Bearer {accounts.issue_token(db, 'boss', 't', actor='test')}"}
    gov = {"Authorization": f"Bearer {accounts.issue_token(db, 'gov', 't', actor='test')}"}
    url = f"/api/admin/models/{model.name}/{model.version}/state"
    with TestClient(create_app(settings, db)) as c:
        assert c.post(url, json={"to": "active", "reason": "demo"}, headers=gov).status_code == 403
        moved = c.post(url, json={"to": "active", "reason": "demo"}, headers=boss)
        assert moved.status_code == 200 and moved.json()["state"] == "active"
        retired = c.post(url, json={"to": "retired", "reason": "old"}, headers=boss)
        assert retired.json()["state"] == "retired"
        again = c.post(url, json={"to": "active", "reason": "undo"}, headers=boss)
        assert again.status_code == 409 and "retired is final" in again.text
        governed = c.post(
            f"/api/governance/models/{model.name}/{model.version}/transitions",
            json={"to": "shadow", "reason": "x"}, headers=gov,
        )  # fmt: skip
        assert governed.status_code == 409 and "not governed" in governed.text
    with db.session() as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.kind == "model.state").order_by(AuditEntry.seq)
        ).first()
    assert entry is not None and entry.actor == "boss"
    assert entry.payload["approval"].startswith("none (embedded default")


def test_leaving_shadow_carries_the_champion_challenger_comparison(
    db: Database, tmp_path: Path
) -> None:
    import datetime as dt

    from radpilot.store.models import Read
    from radpilot.web.app import create_app
    from tests.helpers_worklist import T0, Rows

    calls = [(1, 1, 1), (1, 0, 1), (0, 0, 0), (0, 1, 0), (1, 1, 0), (0, 0, 1)] * 5
    with db.session() as session:  # (champion's call, challenger's call, truth) per study
        rows = Rows(session, tmp_path)
        champion = rows.model("chest", "1.0")
        challenger = rows.model("chest", "2.0", ModelState.SHADOW)
        for i, (old, new, truth) in enumerate(calls):
            study = rows.study(
                T0 + dt.timedelta(minutes=i), T0 + dt.timedelta(minutes=i, seconds=5)
            )
            rows.result(rows.job(study, champion), "pneumonia", 0.9 if old else 0.1)
            rows.result(rows.job(study, challenger), "pneumonia", 0.9 if new else 0.1)
            session.add(Read(study_pk=study.id, finding="pneumonia", value=truth))
        session.add(
            ValidationReportRecord(
                model_version_pk=challenger.id,
                path="v",
                sha256="0" * 64,
                cases=30,
                excluded=0,
                verdict="pass",
                created_by="t",
            )
        )
        session.commit()
    accounts.add_user(db, "gov1", PASSWORD, Role.GOVERNANCE, actor="test")
    token = accounts.issue_token(db, "gov1", "tests", actor="test")
    settings = Settings(data_dir=tmp_path, database_url=db.url, governance="governed")
    with TestClient(create_app(settings, db)) as c:
        made = c.post(
            "/api/governance/models/chest/2.0/transitions",
            json={"to": "pilot", "reason": "shadow month done"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert made.status_code == 201, made.text
    comparison = made.json()["comparison"]
    assert (comparison["champion"], comparison["challenger"]) == ("chest:1.0", "chest:2.0")
    assert comparison["studies"] == comparison["labelled"] == 30
    agree = sum(old == new for old, new, _ in calls) / 30
    assert comparison["agreement"]["value"] == pytest.approx(agree)
    sick = [c for c in calls if c[2] == 1]
    well = [c for c in calls if c[2] == 0]
    assert comparison["challenger_sensitivity"]["value"] == pytest.approx(
        sum(c[1] for c in sick) / len(sick)
    )
    assert comparison["champion_specificity"]["value"] == pytest.approx(
        sum(1 - c[0] for c in well) / len(well)
    )
    with db.session() as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.kind == "model.transition.requested")
        ).one()
    assert entry.payload["comparison"]["studies"] == 30
