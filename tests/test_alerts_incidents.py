"""Alerts and incidents (issue 7): rules fire once per cause (no storm), the webhook gets
each new alert, a named person acknowledges, a cleared cause resolves; incidents are
reported from a study, classified, acted on (suspending the model) and closed — every
step audited, refusals answered with their reason."""

from __future__ import annotations

import datetime as dt
import json
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.exceptions import StarletteDeprecationWarning

from radpilot.core.settings import Settings
from radpilot.governance.audit import AuditLog
from radpilot.monitoring.alerts import AlertRules, evaluate
from radpilot.store import Database
from radpilot.store.models_alerts import Alert, AlertStatus
from radpilot.store.models_pipeline import AuditEntry, JobStatus, ModelState, ModelVersion
from radpilot.store.models_users import Role
from radpilot.web import accounts
from tests.helpers_worklist import Rows

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx`", category=StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
RULES = AlertRules.model_validate(
    {
        "models": [
            {
                "model": "chest",
                "positive_rate": {"validated": 0.3, "window": 30, "max_change": 0.1},
                "failed_jobs": {"max": 3, "hours": 24},
            }
        ]
    }
)


@pytest.fixture
def webhook() -> Iterator[dict[str, Any]]:
    received: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_port}/hook", "received": received}
    server.shutdown()
    server.server_close()


@pytest.fixture
def world(db: Database, tmp_path: Path, webhook: dict[str, Any]) -> Iterator[dict[str, Any]]:
    from radpilot.web.app import create_app

    with db.session() as session:
        rows = Rows(session, tmp_path)
        model = rows.model("chest", "1.0")
        studies = []
        for i in range(60):  # 30 at the validated rate, then 30 at 80 %
            at = NOW - dt.timedelta(hours=3) + dt.timedelta(minutes=i)
            study = rows.study(at, at + dt.timedelta(seconds=5))
            positive = (i % 10 < 3) if i < 30 else (i % 10 < 8)
            result = rows.result(rows.job(study, model), "pneumonia", 0.9 if positive else 0.1)
            studies.append((study.id, result.id))
        for i in range(4):
            job = rows.job(rows.study(NOW, NOW), model, JobStatus.FAILED)
            job.finished_at = NOW - dt.timedelta(hours=1, minutes=i)
        session.commit()
        model_id = model.id
    settings = Settings(data_dir=tmp_path, database_url=db.url, alert_webhook=webhook["url"])
    tokens = {}
    for name, role in (("gov", Role.GOVERNANCE), ("rad", Role.RADIOLOGIST)):
        accounts.add_user(db, name, "long enough password", role, actor="test")
        token = accounts.issue_token(db, name, "tests", actor="test")
        tokens[name] = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings, db)) as client:
        yield {
            "db": db,
            "settings": settings,
            "client": client,
            "as": tokens,
            "studies": studies,
            "model_id": model_id,
            "hook": webhook,
        }


def alerts_of(db: Database) -> dict[str, Alert]:
    with db.session() as session:
        return {a.cause: a for a in session.scalars(select(Alert))}


def test_alerts_fire_once_notify_and_are_acknowledged(world: dict[str, Any]) -> None:
    db, settings, c, who = world["db"], world["settings"], world["client"], world["as"]
    opened = evaluate(db, settings, RULES, now=NOW)
    assert len(opened) == 2
    found = alerts_of(db)
    assert set(found) == {"positive_rate", "failed_jobs"}
    assert found["positive_rate"].value == pytest.approx(0.8)
    assert "4 jobs failed" in found["failed_jobs"].message
    assert sorted(h["cause"] for h in world["hook"]["received"]) == ["failed_jobs", "positive_rate"]
    assert all(a.notified == [{"channel": "webhook", "status": 204}] for a in found.values())

    assert evaluate(db, settings, RULES, now=NOW) == []  # no storm
    assert alerts_of(db)["positive_rate"].seen == 2 and len(world["hook"]["received"]) == 2

    assert c.get("/api/alerts", headers=who["rad"]).status_code == 403
    listed = c.get("/api/alerts?status=open", headers=who["gov"]).json()
    assert {a["cause"] for a in listed} == {"positive_rate", "failed_jobs"}
    failed_id = found["failed_jobs"].id
    ack = c.post(f"/api/alerts/{failed_id}/acknowledge", headers=who["gov"]).json()
    assert ack["status"] == "acknowledged" and ack["acknowledged_by"] == "gov"

    later = NOW + dt.timedelta(days=2)  # the failed jobs leave the 24 h window
    assert evaluate(db, settings, RULES, now=later) == []
    after = alerts_of(db)
    assert after["failed_jobs"].status is AlertStatus.RESOLVED
    assert after["failed_jobs"].resolved_by == "radpilot"
    assert after["positive_rate"].status is AlertStatus.OPEN  # still firing, nobody saw it
    again = c.post(f"/api/alerts/{failed_id}/acknowledge", headers=who["gov"])
    assert again.status_code == 409 and "resolved" in again.text
    assert c.post("/api/alerts/9999/resolve", headers=who["gov"]).status_code == 404

    assert AuditLog(db).verify().ok
    with db.session() as session:
        kinds = [
            (e.kind, e.actor)
            for e in session.scalars(
                select(AuditEntry).where(AuditEntry.kind.like("alert.%")).order_by(AuditEntry.seq)
            )
        ]
    assert kinds == [
        ("alert.open", "radpilot"),
        ("alert.open", "radpilot"),
        ("alert.acknowledge", "gov"),
        ("alert.resolve", "radpilot"),
    ]


def test_incident_from_report_to_closed(world: dict[str, Any]) -> None:
    db, c, who = world["db"], world["client"], world["as"]
    study_id, result_id = world["studies"][40]
    other_result = world["studies"][41][1]
    url = f"/api/studies/{study_id}/incidents"
    secret = "Patient Jane Roe: missed a large effusion"  # noqa: S105 - not a password
    wrong = c.post(
        url,
        json={"kind": "missed_finding", "description": secret, "result_id": other_result},
        headers=who["rad"],
    )
    assert wrong.status_code == 409 and "not an AI result of this study" in wrong.text
    assert (
        c.post(
            "/api/studies/987654/incidents",
            json={"kind": "other", "description": "x"},
            headers=who["rad"],
        ).status_code
        == 404
    )
    bad = c.post(url, json={"kind": "nonsense", "description": "x"}, headers=who["rad"])
    assert bad.status_code == 422
    made = c.post(
        url,
        json={"kind": "missed_finding", "description": secret, "result_id": result_id},
        headers=who["rad"],
    )
    assert made.status_code == 201
    iid = made.json()["id"]
    base = f"/api/governance/incidents/{iid}"
    assert (
        c.post(f"{base}/classify", json={"severity": "high"}, headers=who["rad"]).status_code == 403
    )
    assert c.post(f"{base}/close", headers=who["gov"]).status_code == 409  # not classified yet
    classified = c.post(f"{base}/classify", json={"severity": "high"}, headers=who["gov"]).json()
    assert classified["status"] == "reviewed" and classified["classified_by"] == "gov"
    acted = c.post(
        f"{base}/actions",
        json={"action": "suspend_model", "note": "until reviewed"},
        headers=who["gov"],
    ).json()
    assert acted["actions"][0]["model"] == "chest:1.0"
    with db.session() as session:
        state = session.get(ModelVersion, world["model_id"])
        assert state is not None and state.state is ModelState.SUSPENDED
    closed = c.post(f"{base}/close", headers=who["gov"]).json()
    assert closed["status"] == "closed" and closed["closed_by"] == "gov"
    assert (
        c.post(f"{base}/actions", json={"action": "retrain"}, headers=who["gov"]).status_code == 409
    )
    listed = c.get("/api/governance/incidents", headers=who["gov"]).json()
    assert listed[0]["description"] == secret
    assert AuditLog(db).verify().ok
    with db.session() as session:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
    kinds = [e.kind for e in entries if e.kind.startswith("incident.")]
    assert kinds == ["incident.report", "incident.classify", "incident.action", "incident.close"]
    assert all(secret not in json.dumps(e.payload) for e in entries)  # free text stays out
    (suspended,) = [e for e in entries if e.kind == "model.state"]
    assert suspended.payload["to"] == "suspended" and "incident" in suspended.payload["approval"]


def test_alerts_are_emailed(db: Database, tmp_path: Path) -> None:
    from email import message_from_bytes

    from aiosmtpd.controller import Controller

    from tests.conftest import free_port

    received: list[Any] = []

    class Inbox:
        async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
            received.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
            return "250 OK"

    controller = Controller(Inbox(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        with db.session() as session:
            rows = Rows(session, tmp_path)
            model = rows.model("chest", "1.0")
            for i in range(4):
                job = rows.job(rows.study(NOW, NOW), model, JobStatus.FAILED)
                job.finished_at = NOW - dt.timedelta(minutes=i)
            session.commit()
        settings = Settings(
            data_dir=tmp_path,
            database_url=db.url,
            alert_smtp_host="127.0.0.1",
            alert_smtp_port=controller.port,
            alert_smtp_to=["gov@hospital.example", "it@hospital.example"],
        )
        (opened,) = evaluate(db, settings, RULES, now=NOW)
    finally:
        controller.stop()
    ((to, mail),) = received
    assert to == ["gov@hospital.example", "it@hospital.example"]
    assert mail["Subject"] == "[radpilot] chest: failed_jobs"
    assert "4 jobs failed" in mail.get_payload()
    with db.session() as session:
        alert = session.get(Alert, opened)
        assert alert is not None and alert.notified == [{"channel": "email", "to": 2}]
