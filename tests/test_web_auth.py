"""Sign-in, sessions, roles, CSRF and the bad-input answers of the web app (issue 6).

Each case checks the status, the message and that nothing changed: no decision stored,
no user added, no audit entry written. The app runs on SQLite and PostgreSQL (``db``).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from starlette.exceptions import StarletteDeprecationWarning
from typer.testing import CliRunner

from radpilot.core.settings import Settings
from radpilot.governance.audit import AuditLog
from radpilot.store import Database
from radpilot.store.models_pipeline import AuditEntry, Feedback
from radpilot.store.models_users import ApiToken, Role, User, UserSession
from radpilot.web import accounts
from tests.helpers_worklist import T0, Rows

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx`", category=StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"  # noqa: S105 - the test users' password
PATIENT_ID = "PAT-SECRET-4711"


@pytest.fixture
def world(db: Database, tmp_path: Path) -> dict[str, Any]:
    w: dict[str, Any] = {"db": db, "data_dir": tmp_path / "data"}
    with db.session() as session:
        rows = Rows(session, w["data_dir"])
        model = rows.model("cxr-triage", "1.2")
        study = rows.study(T0, T0 + dt.timedelta(seconds=30))
        study.patient.patient_id = PATIENT_ID
        w["study"], w["study_uid"] = study.id, study.study_instance_uid
        w["result"] = rows.result(rows.job(study, model), "pneumonia", 0.9).id
        session.commit()
    for name, role in (("rad", Role.RADIOLOGIST), ("boss", Role.ADMIN), ("gov", Role.GOVERNANCE)):
        accounts.add_user(db, name, PASSWORD, role, actor="test")
    return w


def app_client(w: dict[str, Any], **settings: Any) -> TestClient:
    from radpilot.web.app import create_app

    values = {"data_dir": w["data_dir"], "database_url": w["db"].url, **settings}
    return TestClient(create_app(Settings(**values), w["db"]), follow_redirects=False)


@pytest.fixture
def client(world: dict[str, Any]) -> Iterator[TestClient]:
    with app_client(world) as c:
        yield c


def form_token(c: TestClient) -> str:
    page = c.get("/signin")
    assert page.status_code == 200
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match is not None
    return match.group(1)


def sign_in(c: TestClient, username: str, password: str = PASSWORD) -> Any:
    token = form_token(c)
    return c.post(
        "/signin",
        data={"username": username, "password": password, "csrf_token": token, "next": "/worklist"},
    )


def csrf_of(c: TestClient) -> str:
    page = c.get("/worklist")
    assert page.status_code == 200, page.text
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
    assert match is not None
    return match.group(1)


def counts(db: Database) -> tuple[int, int, int]:
    with db.session() as session:
        return (
            session.scalar(select(func.count()).select_from(Feedback)) or 0,
            session.scalar(select(func.count()).select_from(User)) or 0,
            session.scalar(select(func.count()).select_from(AuditEntry)) or 0,
        )


def test_pages_need_sign_in_and_sign_in_works(world: dict[str, Any], client: TestClient) -> None:
    assert client.get("/api/health").status_code == 200  # the one route without sign-in
    page = client.get("/worklist", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/signin?next=/worklist"
    api = client.get("/api/worklist")
    assert api.status_code == 401 and "sign in" in api.json()["detail"]
    for path in ("/api/openapi.json", "/api/events", "/api/admin/users", "/dicomweb/studies"):
        assert client.get(path).status_code == 401, path
    signed = sign_in(client, "rad")
    assert signed.status_code == 303 and signed.headers["location"] == "/worklist"
    cookie = signed.cookies.get("radpilot_session")
    assert cookie and len(cookie) >= 40
    set_cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie
    me = client.get("/api/me").json()
    assert me == {"username": "rad", "role": "radiologist", "via": "session"}
    assert client.get("/api/worklist").status_code == 200
    page = client.get("/worklist")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert "https://" not in page.text and "http://" not in page.text  # nothing fetched elsewhere
    with world["db"].session() as session:  # the cookie's value is not what is stored
        stored = session.scalars(select(UserSession.token_sha256)).all()
    assert cookie not in stored and len(stored) == 1


def test_wrong_password_and_unknown_user_are_401(world: dict[str, Any], client: TestClient) -> None:
    before = counts(world["db"])
    for name, password in (("rad", "wrong password!"), ("nobody", PASSWORD)):
        answer = sign_in(client, name, password)
        assert answer.status_code == 401
        assert "Wrong user name or password" in answer.text
        assert "radpilot_session" not in answer.cookies
    assert client.get("/api/worklist").status_code == 401
    assert counts(world["db"]) == before


def test_sign_in_is_rate_limited(world: dict[str, Any]) -> None:
    with app_client(world, signin_max_failures=3) as c:
        for _ in range(3):
            assert sign_in(c, "rad", "not the password").status_code == 401
        limited = sign_in(c, "rad")  # even the right password, for now
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) > 0
        assert "Too many failed attempts" in limited.text
        assert c.get("/api/worklist").status_code == 401


def test_sign_in_form_needs_its_csrf_token(world: dict[str, Any], client: TestClient) -> None:
    form_token(client)
    answer = client.post("/signin", data={"username": "rad", "password": PASSWORD})
    assert answer.status_code == 403 and "missing CSRF token" in answer.text
    forged = client.post(
        "/signin", data={"username": "rad", "password": PASSWORD, "csrf_token": "forged"}
    )
    assert forged.status_code == 403
    assert client.get("/api/worklist").status_code == 401


def test_changes_need_the_session_csrf_token(world: dict[str, Any], client: TestClient) -> None:
    assert sign_in(client, "rad").status_code == 303
    url = f"/api/studies/{world['study']}/feedback"
    before = counts(world["db"])
    missing = client.post(url, json={"decision": "accept"})
    assert missing.status_code == 403 and "missing CSRF token" in missing.json()["detail"]
    wrong = client.post(url, json={"decision": "accept"}, headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403 and "does not match" in wrong.json()["detail"]
    assert counts(world["db"]) == before
    token = csrf_of(client)
    ok = client.post(url, json={"decision": "accept"}, headers={"X-CSRF-Token": token})
    assert ok.status_code == 201, ok.text
    assert ok.json()["reader"] == "rad"
    assert AuditLog(world["db"]).verify().ok


def test_expired_session_is_401_and_changes_nothing(
    world: dict[str, Any], client: TestClient
) -> None:
    assert sign_in(client, "rad").status_code == 303
    token = csrf_of(client)
    with world["db"].session() as session:
        session.execute(
            update(UserSession).values(last_seen_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
        )
        session.commit()
    before = counts(world["db"])
    answer = client.post(
        f"/api/studies/{world['study']}/feedback",
        json={"decision": "accept"},
        headers={"X-CSRF-Token": token},
    )
    assert answer.status_code == 401 and "expired" in answer.json()["detail"]
    assert counts(world["db"]) == before
    page = client.get("/worklist", headers={"Accept": "text/html"})
    assert page.status_code == 303 and "expired=1" in page.headers["location"]
    assert "session has expired" in client.get(page.headers["location"]).text


def test_roles(world: dict[str, Any], client: TestClient) -> None:
    assert sign_in(client, "rad").status_code == 303
    token = csrf_of(client)
    headers = {"X-CSRF-Token": token}
    before = counts(world["db"])
    new_user = {"username": "intruder", "password": PASSWORD, "role": "admin"}
    for method, path, body in (
        ("GET", "/api/admin/users", None),
        ("POST", "/api/admin/users", new_user),
        ("POST", "/api/admin/users/boss/disable", None),
        ("GET", "/api/governance/audit", None),
        ("GET", "/api/governance/audit/verify", None),
    ):
        answer = client.request(method, path, json=body, headers=headers)
        assert answer.status_code == 403, (path, answer.text)
        assert "needs the role" in answer.json()["detail"]
    for page in ("/admin", "/governance"):
        answer = client.get(page, headers={"Accept": "text/html"})
        assert answer.status_code == 403 and "needs the role" in answer.text
    assert counts(world["db"]) == before

    with app_client(world) as admin:
        assert sign_in(admin, "boss").status_code == 303
        admin_headers = {"X-CSRF-Token": csrf_of(admin)}
        added = admin.post(
            "/api/admin/users",
            json={"username": "newrad", "password": PASSWORD, "role": "radiologist"},
            headers=admin_headers,
        )
        assert added.status_code == 201 and added.json()["role"] == "radiologist"
        taken = admin.post(
            "/api/admin/users",
            json={"username": "newrad", "password": PASSWORD, "role": "radiologist"},
            headers=admin_headers,
        )
        assert taken.status_code == 409
        decide = admin.post(
            f"/api/studies/{world['study']}/feedback",
            json={"decision": "accept"},
            headers=admin_headers,
        )
        assert decide.status_code == 403  # decisions are the radiologists'
        off = admin.post("/api/admin/users/rad/disable", headers=admin_headers)
        assert off.status_code == 200 and off.json()["disabled"] is True
    assert client.get("/api/worklist").status_code == 401  # rad's session ended
    assert sign_in(client, "rad").status_code == 401
    with app_client(world) as gov:
        assert sign_in(gov, "gov").status_code == 303
        verify = gov.get("/api/governance/audit/verify").json()
        assert verify["ok"] is True and verify["entries"] >= 5
        kinds = {e["kind"] for e in gov.get("/api/governance/audit").json()}
        assert {"user.add", "user.disable", "session.open"} <= kinds
        assert gov.get("/api/admin/users").status_code == 403


def test_not_found_oversized_and_malformed(world: dict[str, Any]) -> None:
    with app_client(world, max_request_bytes=4096) as c:
        assert sign_in(c, "rad").status_code == 303
        headers = {"X-CSRF-Token": csrf_of(c)}
        before = counts(world["db"])
        page = c.get("/studies/987654", headers={"Accept": "text/html"})
        assert page.status_code == 404 and "no study" in page.text.lower()
        assert c.get("/api/studies/987654").status_code == 404
        assert c.get("/api/viewer/instances/987654/frames/1").status_code == 404
        assert c.get("/api/viewer/results/987654/heatmap").status_code == 404
        url = f"/api/studies/{world['study']}/feedback"
        huge = c.post(url, json={"decision": "accept", "free_text": "x" * 10_000}, headers=headers)
        assert huge.status_code == 413 and "larger than 4096 bytes" in huge.json()["detail"]
        broken = c.post(
            url, content=b'{"decision": ', headers={**headers, "Content-Type": "application/json"}
        )
        assert broken.status_code == 422
        wrong = c.post(url, json={"decision": "maybe"}, headers=headers)
        assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"][-1] == "decision"
        assert counts(world["db"]) == before


def test_api_tokens_for_machine_clients(world: dict[str, Any], client: TestClient) -> None:
    db = world["db"]
    token = accounts.issue_token(db, "rad", "ris", actor="test")
    with db.session() as session:
        (stored,) = session.scalars(select(ApiToken.token_sha256)).all()
    assert stored != token and len(stored) == 64  # only its hash is kept
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/me", headers=bearer).json()["via"] == "token"
    posted = client.post(
        f"/api/studies/{world['study']}/feedback", json={"decision": "reject"}, headers=bearer
    )
    assert posted.status_code == 201  # a bearer request needs no CSRF token
    assert posted.json()["reader"] == "rad"
    accounts.set_disabled(db, "rad", True, actor="test")
    assert client.get("/api/me", headers=bearer).status_code == 401


def test_users_cli(world: dict[str, Any]) -> None:
    from radpilot.cli.main import _register, app

    _register()
    env = {"RADPILOT_DATABASE_URL": world["db"].url}
    runner = CliRunner()
    base = ["--data-dir", str(world["data_dir"]), "users"]
    added = runner.invoke(
        app, [*base, "add", "dr.new", "--role", "governance", "--password-stdin"],
        input=f"{PASSWORD}\n", env=env,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    short = runner.invoke(app, [*base, "add", "dr.short", "--password-stdin"], input="short\n",
                          env=env)  # fmt: skip
    assert short.exit_code == 1 and "at least 10 characters" in short.output
    listed = runner.invoke(app, [*base, "list", "--format", "json"], env=env)
    users = {u["username"]: u for u in __import__("json").loads(listed.output)}
    assert users["dr.new"]["role"] == "governance" and not users["dr.new"]["disabled"]
    assert "dr.short" not in users
    assert runner.invoke(app, [*base, "disable", "dr.new"], env=env).exit_code == 0
    assert accounts.authenticate_password(world["db"], "dr.new", PASSWORD) is None
    token = runner.invoke(app, [*base, "token", "boss", "--name", "script"], env=env)
    assert token.exit_code == 0 and token.output.startswith("rp_")
    missing = runner.invoke(app, [*base, "disable", "nobody"], env=env)
    assert missing.exit_code == 1 and "no user 'nobody'" in missing.output


def test_no_patient_identifier_in_logs_or_urls(
    world: dict[str, Any], client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert sign_in(client, "rad").status_code == 303
    headers = {"X-CSRF-Token": csrf_of(client)}
    listed = client.get("/api/worklist").json()
    assert listed[0]["patient_id"] == PATIENT_ID  # the page needs it ...
    assert listed[0]["patient_name"] is None  # ... names only when the settings say so
    client.get(f"/studies/{world['study']}")
    client.post(
        f"/api/studies/{world['study']}/feedback",
        json={"decision": "reject", "free_text": f"see {PATIENT_ID}"},
        headers=headers,
    )
    client.get(f"/api/studies/{world['study_uid']}/report")  # 404: no report file
    # Everything the server side logged (the test's own HTTP client logs its URLs).
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    assert PATIENT_ID not in text and world["study_uid"] not in text
    assert "signed in: rad" in text  # user names are logged, not patients
    page = client.get(f"/studies/{world['study']}").text
    links = re.findall(r'(?:href|src|action)="([^"]+)"', page)
    assert links and not any(PATIENT_ID in link or world["study_uid"] in link for link in links)
