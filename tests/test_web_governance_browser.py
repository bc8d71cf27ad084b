"""The governance pages in Chromium (issue 7): a governance member signs in, acknowledges an
alert, approves a model transition, classifies and closes an incident, and opens the
dashboard with its plots; each action is checked in the database and the audit log."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from radpilot.core.settings import Settings
from radpilot.governance import incidents, lifecycle
from radpilot.governance.audit import AuditLog
from radpilot.monitoring.alerts import AlertRules, evaluate
from radpilot.store import Database
from radpilot.store.models_alerts import Alert, AlertStatus, Incident, IncidentKind
from radpilot.store.models_governance import Transition, TransitionStatus
from radpilot.store.models_pipeline import AuditEntry, JobStatus, ModelState
from radpilot.store.models_users import Role
from radpilot.web import accounts
from radpilot.web.routes_dashboard import PLOTS
from radpilot.web.routes_subgroups import ATTRIBUTES
from tests.conftest import free_port
from tests.helpers_worklist import Rows
from tests.test_web_browser import ARTIFACTS, chromium

pytestmark = [pytest.mark.slow, pytest.mark.browser]
PASSWORD = "long enough password"  # noqa: S105 - the test users' password


def test_governance_pages(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    from radpilot.web.server import WebServer

    db = Database(f"sqlite:///{tmp_path / 'radpilot.db'}")
    db.migrate()
    now = dt.datetime.now(dt.UTC)
    with db.session() as session:
        rows = Rows(session, tmp_path)
        model = rows.model("chest", "1.0")
        rows.model("chest", "2.0", ModelState.REGISTERED)
        for i in range(6):
            at = now - dt.timedelta(hours=1, minutes=i)
            study = rows.study(at, at)
            rows.result(
                rows.job(study, model, ended=at + dt.timedelta(seconds=20)), "pneumonia", 0.9
            )
            job = rows.job(study, model, JobStatus.FAILED)
            job.finished_at = at
        session.commit()
        study_id = study.id
    settings = Settings(
        data_dir=tmp_path, database_url=db.url, http_port=free_port(), governance="governed"
    )
    for name in ("gov1", "gov2"):
        accounts.add_user(db, name, PASSWORD, Role.GOVERNANCE, actor="test")
    rules = AlertRules.model_validate({"models": [{"model": "chest", "failed_jobs": {"max": 3}}]})
    (alert_id,) = evaluate(db, settings, rules)
    request = lifecycle.request_transition(
        db,
        settings,
        "chest",
        "2.0",
        ModelState.SHADOW,
        actor="gov1",
        role=Role.GOVERNANCE,
        reason="try it",
    )
    incident_id = incidents.report(
        db, study_id, IncidentKind.SYSTEM_FAILURE, "jobs fail", actor="dr.a"
    )
    server = WebServer(settings, db)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    errors: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/governance")
            page.fill("#username", "gov2")
            page.fill("#password", PASSWORD)
            page.click("#signin-form button[type=submit]")
            page.wait_for_url("**/governance")
            alert_row = page.locator(f"#alerts tr[data-alert-id='{alert_id}']")
            alert_row.get_by_role("button", name="Acknowledge").click()
            expect(alert_row).to_have_attribute("data-status", "acknowledged")
            request_row = page.locator(f"#transitions tr[data-transition-id='{request.id}']")
            request_row.get_by_role("button", name="Approve").click()
            expect(request_row).to_contain_text("applied")
            incident_row = page.locator(f"#incidents tr[data-incident-id='{incident_id}']")
            incident_row.locator("select").select_option("high")
            incident_row.get_by_role("button", name="Classify").click()
            expect(incident_row).to_contain_text("reviewed")
            incident_row.get_by_role("button", name="Close").click()
            expect(incident_row).to_contain_text("closed")
            expect(page.locator("#verify-status")).to_contain_text("is intact")
            page.screenshot(path=str(ARTIFACTS / "governance.png"), full_page=True)
            page.goto(f"{base}/dashboard?model=chest&days=7")
            images = page.locator(".plots img")
            # every daily plot, then one subgroup plot per attribute
            expect(images).to_have_count(len(PLOTS) + len(ATTRIBUTES))
            page.wait_for_function(
                "() => [...document.querySelectorAll('.plots img')].every(i => i.naturalWidth > 0)"
            )
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            browser.close()
    finally:
        server.stop()
    assert errors == []
    with db.session() as session:
        alert = session.get(Alert, alert_id)
        transition = session.get(Transition, request.id)
        incident = session.get(Incident, incident_id)
        assert alert is not None and alert.status is AlertStatus.ACKNOWLEDGED
        assert alert.acknowledged_by == "gov2"
        assert transition is not None and transition.status is TransitionStatus.APPLIED
        assert incident is not None and incident.closed_by == "gov2"
        kinds = [(e.kind, e.actor) for e in session.scalars(select(AuditEntry))]
    for expected in (
        ("alert.acknowledge", "gov2"),
        ("model.transition.approved", "gov2"),
        ("incident.classify", "gov2"),
        ("incident.close", "gov2"),
    ):
        assert expected in kinds
    assert AuditLog(db).verify().ok
    db.dispose()
