"""The worklist and feedback API, and ``radpilot worklist``, on SQLite and PostgreSQL.

The world below is built so that each ordering rule decides at least one pair, and would
be seen broken if it were dropped:

* ``crit`` (critical, score .55, newest) before ``pos`` (positive, score .60, older):
  only "critical first" explains it;
* ``pos`` (.60) before ``high`` (negative at its model's threshold .9, score .85, older):
  only "positive first" explains it; ``high`` is also flagged critical without being
  positive, which must not count;
* ``high`` (.85, received late) before ``old`` (.30, the oldest): score before waiting;
* ``old`` before ``new`` (both .30): waiting time;
* ``shadow`` has only a shadow result (critical, .999): it must sit with the studies
  without results, and ``pos``'s shadow result must not make ``pos`` critical.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.exceptions import StarletteDeprecationWarning

from radpilot.core.settings import Settings
from radpilot.governance.audit import AuditLog
from radpilot.store import Database
from radpilot.store.models_pipeline import AuditEntry, Feedback, JobStatus, ModelState
from tests.conftest import free_port
from tests.helpers_worklist import T0, Rows, run_cli, utc

with warnings.catch_warnings():
    # starlette 1.x warns that its test client will move from httpx to httpx2; httpx is
    # what is pinned here, and the client works with it.
    warnings.filterwarnings("ignore", "Using `httpx`", category=StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

H = dt.timedelta(hours=1)
ORDER = ["crit", "pos", "high", "old", "new", "shadow", "wait", "failed", "running"]


@pytest.fixture
def world(db: Database, tmp_path: Path) -> dict[str, Any]:
    data_dir = tmp_path / "data"
    w: dict[str, Any] = {"db": db, "data_dir": data_dir}
    with db.session() as session:
        rows = Rows(session, data_dir)
        cxr = rows.model("cxr-triage", "1.2")
        ct = rows.model("ct-nodule", "0.9")
        shadow = rows.model("cxr-shadow", "2.0-rc1", ModelState.SHADOW)

        def study(key: str, received: dt.datetime, complete: bool = True, **kw: Any) -> Any:
            s = rows.study(
                received, received + dt.timedelta(seconds=30) if complete else None, **kw
            )
            w[key], w[f"{key}_uid"] = s.id, s.study_instance_uid
            return s

        def result(key: str, s: Any, model: Any, finding: str, score: float, **kw: Any) -> Any:
            r = rows.result(rows.job(s, model), finding, score, **kw)
            w[key] = r.id
            return r

        s = study("crit", T0 + 7 * H, modality="CR", accession="A1", description="CHEST PA")
        r = result("crit_r", s, cxr, "pneumothorax", 0.55, critical=True)
        rows.obj(r, "text", b"AI: pneumothorax suspected (cxr-triage 1.2)\n")
        rows.obj(r, "fhir", json.dumps({"resourceType": "DiagnosticReport", "id": "c"}).encode())

        s = study("pos", T0 + 6 * H, modality="CT", accession="A2", description="CT THORAX")
        r = result("pos_r", s, cxr, "consolidation", 0.60)
        rows.obj(r, "fhir", json.dumps({"resourceType": "DiagnosticReport", "id": "p"}).encode())
        r = result("pos_shadow_r", s, shadow, "pneumothorax", 0.999, critical=True)
        rows.obj(r, "fhir", json.dumps({"resourceType": "DiagnosticReport", "id": "x"}).encode())

        s = study("high", T0 + 5 * H, modality="CT", accession="A3", description="CT THORAX")
        r = result("high_r", s, ct, "nodule", 0.85, threshold=0.9, critical=True)
        rows.obj(r, "fhir", json.dumps({"resourceType": "DiagnosticReport", "id": "h1"}).encode())
        r = result("high_r2", s, cxr, "consolidation", 0.20)
        rows.obj(r, "fhir", json.dumps({"resourceType": "DiagnosticReport", "id": "h2"}).encode())

        s = study("old", T0, accession="A1100X", description="CHEST AP")
        r = result("old_r", s, cxr, "consolidation", 0.30)
        rows.obj(r, "text", write=False)  # recorded, but the file is not there
        s = study("new", T0 + 2 * H, accession="A_100%", description="CHEST AP")
        r = result("new_r", s, cxr, "consolidation", 0.30)
        rows.obj(r, "text", b"altered", sha256="0" * 64)

        s = study("shadow", T0 + 0.5 * H, description="CHEST PA")
        r = result("shadow_r", s, shadow, "pneumothorax", 0.999, critical=True)
        rows.obj(r, "text", b"shadow report\n")
        rows.job(study("wait", T0 + 3 * H, modality="MR"), cxr, JobStatus.QUEUED)
        rows.job(study("failed", T0 + 4 * H, modality="DX"), cxr, JobStatus.FAILED)
        s = study("running", T0 + 4.5 * H)
        rows.job(s, cxr, JobStatus.RUNNING)
        rows.job(s, shadow, JobStatus.FAILED)  # a shadow job's failure is not shown
        study("fresh", T0 + 8 * H, complete=False)  # still receiving, no result: not listed
        rows.job(study("fresh_shadow", T0 + 8 * H, complete=False), shadow)
    return w


READERS = ("dr.a", "dr.jones", "dr.lee")


class ReaderAuth(httpx.Auth):
    """Each reader's own token: the one of the body's ``reader``, else dr.a's."""

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        reader = "dr.a"
        if request.content and request.headers.get("content-type") == "application/json":
            reader = json.loads(request.content).get("reader") or reader
        if reader in READERS:
            request.headers["Authorization"] = f"Bearer tok-{reader}"
        yield request


def client_for(w: dict[str, Any], auth: bool = True, **settings: Any) -> TestClient:
    from radpilot.web.app import create_app

    values = {
        "data_dir": w["data_dir"],
        "database_url": w["db"].url,
        "api_tokens": {r: f"tok-{r}" for r in READERS},
    }
    client = TestClient(create_app(Settings(**{**values, **settings}), w["db"]))
    if auth:
        client.auth = ReaderAuth()
    return client


@pytest.fixture
def api(world: dict[str, Any]) -> Iterator[TestClient]:
    with client_for(world) as client:
        yield client


def keys(world: dict[str, Any], items: list[dict[str, Any]]) -> list[str]:
    by_id = {world[k]: k for k in [*ORDER, "fresh", "fresh_shadow"]}
    return [by_id[i["study_id"]] for i in items]


def test_worklist_order_and_shadow_results(world: dict[str, Any], api: TestClient) -> None:
    response = api.get("/api/worklist")
    assert response.status_code == 200, response.text
    items = response.json()
    assert keys(world, items) == ORDER
    assert response.headers["X-Total-Count"] == str(len(ORDER))
    assert [i["priority"] for i in items] == [3, 2, 1, 1, 1, 0, 0, 0, 0]
    assert [i["critical"] for i in items][:3] == [True, False, False]
    assert "cxr-shadow" not in response.text  # neither name, finding score nor id
    pos = items[1]
    assert [r["id"] for r in pos["results"]] == [world["pos_r"]]
    assert [r["id"] for r in items[2]["results"]] == [world["high_r"], world["high_r2"]]
    assert items[2]["results"][0]["above_operating_point"] is False
    assert items[2]["results"][0]["critical"] is False
    assert items[5]["results"] == [] and items[5]["max_score"] is None
    status = {k: i["ai_status"] for k, i in zip(ORDER, items, strict=True)}
    assert status == {
        "crit": "done", "pos": "done", "high": "done", "old": "done", "new": "done",
        "shadow": "none", "wait": "pending", "failed": "failed", "running": "running",
    }  # fmt: skip
    crit = items[0]
    assert crit["study_instance_uid"] == world["crit_uid"]
    assert crit["modalities"] == ["CR"] and crit["body_parts"] == ["CHEST"]
    assert crit["patient_id"].startswith("PSEUDO-")
    assert items[3]["waiting_seconds"] - crit["waiting_seconds"] == pytest.approx(7 * 3600, abs=60)
    assert utc(dt.datetime.fromisoformat(crit["received_at"])) == T0 + 7 * H


def test_filters_and_paging(world: dict[str, Any], api: TestClient) -> None:
    def listed(**params: Any) -> list[str]:
        response = api.get("/api/worklist", params=params)
        assert response.status_code == 200, response.text
        return keys(world, response.json())

    assert listed(modality="ct") == ["pos", "high"]
    assert listed(finding="Pneumothorax") == ["crit"]  # the shadow pneumothorax is not seen
    assert listed(ai_status="pending") == ["wait"]
    assert listed(ai_status="none") == ["shadow"]
    assert listed(ai_status="done") == ORDER[:5]
    assert listed(q="thorax") == ["pos", "high"]
    assert listed(q="_100%") == ["new"]  # LIKE wildcards are taken literally
    assert listed(limit=3, offset=2) == ORDER[2:5]
    assert listed(limit=3, offset=8) == ORDER[8:]
    with world["db"].session() as session:
        Rows(session).feedback(_result(session, world["old_r"]), dt.datetime.now(dt.UTC))
    assert listed(decided=True) == ["old"]
    assert listed(decided=False) == [k for k in ORDER if k != "old"]
    bad = api.get("/api/worklist", params={"ai_status": "sleeping", "limit": 0})
    assert bad.status_code == 422
    assert {tuple(e["loc"]) for e in bad.json()["detail"]} == {
        ("query", "ai_status"),
        ("query", "limit"),
    }


def _result(session: Any, result_id: int) -> Any:
    from radpilot.store.models_pipeline import Result

    return session.get(Result, result_id)


def test_cli_json_and_table(world: dict[str, Any], api: TestClient) -> None:
    out = run_cli(world["db"].url, world["data_dir"], "worklist", "--format", "json")
    assert out.exit_code == 0, out.output
    items = json.loads(out.stdout)
    assert keys(world, items) == ORDER
    first = items[0]
    assert first["study_instance_uid"] == world["crit_uid"] and first["priority"] == 3
    (r,) = first["results"]
    assert (r["model_name"], r["model_version"], r["finding"]) == (
        "cxr-triage",
        "1.2",
        "pneumothorax",
    )
    assert r["score"] == pytest.approx(0.55) and r["above_operating_point"] is True
    assert "cxr-shadow" not in out.stdout
    filtered = run_cli(world["db"].url, world["data_dir"], "worklist", "--format", "json",
                       "--modality", "CT", "--limit", "1")  # fmt: skip
    assert keys(world, json.loads(filtered.stdout)) == ["pos"]
    table = run_cli(world["db"].url, world["data_dir"], "worklist")
    assert table.exit_code == 0, table.output
    assert "CRITICAL" in table.stdout and "pneumothorax" in table.stdout
    assert "cxr-shadow" not in table.stdout
    assert table.stdout.index("A1100X") < table.stdout.index("A_100%")  # old before new


def test_study_detail(world: dict[str, Any], api: TestClient) -> None:
    by_id = api.get(f"/api/studies/{world['pos']}")
    by_uid = api.get(f"/api/studies/{world['pos_uid']}")
    assert by_id.status_code == 200, by_id.text
    body, same = by_id.json(), by_uid.json()
    assert body.pop("waiting_seconds") == pytest.approx(same.pop("waiting_seconds"), abs=5)
    assert body == same
    assert [r["id"] for r in body["results"]] == [world["pos_r"]]
    assert body["results"][0]["details"]["findings"][0]["label"] == "consolidation"
    assert [o["kind"] for o in body["results"][0]["objects"]] == ["fhir"]
    assert "path" not in body["results"][0]["objects"][0]
    assert [s["modality"] for s in body["series"]] == ["CT"]
    assert body["priority"] == 2 and body["feedback"] == []
    shadow = api.get(f"/api/studies/{world['shadow_uid']}").json()
    assert shadow["results"] == [] and "0.999" not in json.dumps(shadow)
    fresh = api.get(f"/api/studies/{world['fresh']}")
    assert fresh.status_code == 200 and fresh.json()["completed_at"] is None
    for unknown in ("999999", "1.2.3.4.5.6.7"):
        missing = api.get(f"/api/studies/{unknown}")
        assert missing.status_code == 404
        assert "GET /api/worklist" in missing.json()["detail"]


def test_reports_text_and_fhir(world: dict[str, Any], api: TestClient) -> None:
    text = api.get(f"/api/studies/{world['crit_uid']}/report")
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert text.text == "AI: pneumothorax suspected (cxr-triage 1.2)\n"
    fhir = api.get(f"/api/studies/{world['crit']}/report.json")
    assert fhir.headers["content-type"] == "application/fhir+json"
    assert fhir.json() == {"resourceType": "DiagnosticReport", "id": "c"}
    pos = api.get(f"/api/studies/{world['pos']}/report.json").json()
    assert pos["id"] == "p"  # the shadow result's report is not served, nor bundled
    bundle = api.get(f"/api/studies/{world['high']}/report.json").json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["h1", "h2"]
    assert api.get(f"/api/studies/{world['shadow']}/report").status_code == 404
    assert api.get(f"/api/studies/{world['pos']}/report").status_code == 404
    assert api.get(f"/api/studies/{world['old']}/report").status_code == 404  # file gone
    assert api.get("/api/studies/424242/report").status_code == 404
    altered = api.get(f"/api/studies/{world['new']}/report")
    assert altered.status_code == 500 and "checksum" in altered.json()["detail"]


def audit_entries(db: Database) -> list[AuditEntry]:
    return list(AuditLog(db).entries())


def test_feedback_accept_modify_reject_audited(world: dict[str, Any], api: TestClient) -> None:
    db = world["db"]
    opened = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=3)
    accept = api.post(f"/api/studies/{world['crit_uid']}/feedback",
                      json={"decision": "accept", "reader": "dr.jones"})  # fmt: skip
    assert accept.status_code == 201, accept.text
    assert accept.json()["result_id"] == world["crit_r"]  # the only visible result
    assert accept.json()["model_version"] == "1.2"
    modify = api.post(
        f"/api/studies/{world['pos']}/feedback",  # its shadow result does not count
        json={"decision": "modify", "reader": "dr.lee", "corrected_label": "atelectasis",
              "corrected_measurement": {"name": "extent", "value": 12.5, "unit": "cm2"}},
    )  # fmt: skip
    assert modify.status_code == 201, modify.text
    reject = api.post(
        f"/api/studies/{world['high']}/feedback",
        json={"decision": "reject", "reader": "dr.jones", "result_id": world["high_r"],
              "reason_code": "false_positive", "free_text": "Calcified granuloma.",
              "opened_at": opened.isoformat()},
    )  # fmt: skip
    assert reject.status_code == 201, reject.text
    with db.session() as session:
        stored = {f.id: f for f in session.scalars(select(Feedback))}
    assert len(stored) == 3
    m = stored[modify.json()["id"]]
    assert (m.decision, m.reader, m.corrected_label) == ("modify", "dr.lee", "atelectasis")
    assert m.corrected_measurement == {"name": "extent", "value": 12.5, "unit": "cm2"}
    r = stored[reject.json()["id"]]
    assert (r.result_pk, r.reason_code, r.free_text) == (
        world["high_r"],
        "false_positive",
        "Calcified granuloma.",
    )
    assert utc(r.opened_at) == opened
    assert AuditLog(db).verify().ok
    entries = [e for e in audit_entries(db) if e.kind == "feedback.decision"]
    assert [(e.actor, e.subject) for e in entries] == [
        ("dr.jones", world["crit_uid"]), ("dr.lee", world["pos_uid"]),
        ("dr.jones", world["high_uid"]),
    ]  # fmt: skip
    assert entries[2].payload["result_id"] == world["high_r"]
    assert entries[2].payload["decision"] == "reject"
    assert entries[2].payload["model"] == "ct-nodule"
    assert entries[2].payload["model_version"] == "0.9"
    assert "Calcified" not in json.dumps(entries[2].payload)  # free text stays out
    assert reject.json()["audit_seq"] == entries[2].seq
    listed = {i["study_id"]: i for i in api.get("/api/worklist").json()}
    assert listed[world["high"]]["decision"]["decision"] == "reject"
    assert listed[world["pos"]]["decision"]["reader"] == "dr.lee"
    detail = api.get(f"/api/studies/{world['high']}").json()
    assert [f["decision"] for f in detail["feedback"]] == ["reject"]


REFUSED = (  # body, the field the 422 names, words its message must contain
    ({"decision": "modify", "reader": "dr.a"}, "corrected_label", "needs the correction"),
    ({"decision": "maybe", "reader": "dr.a"}, "decision", "accept"),
    ({"decision": "accept", "reader": ""}, "reader", "at least 1 character"),
    ({"decision": "accept", "reader": "dr.a", "corrected_label": "x"}, "decision", "modify"),
    ({"decision": "accept", "reader": "dr.a", "colour": "red"}, "colour", "Extra"),
    ({"decision": "accept", "reader": "dr.a", "opened_at": "2024-05-01T08:00:00"},
     "opened_at", "timezone"),
    ({"decision": "modify", "reader": "dr.a",
      "corrected_measurement": {"name": "d", "value": "nan", "unit": "mm"}},
     "corrected_measurement", "finite"),
)  # fmt: skip


def test_feedback_refused_422(world: dict[str, Any], api: TestClient) -> None:
    before = len(audit_entries(world["db"]))
    for body, field, words in REFUSED:
        response = api.post(f"/api/studies/{world['crit']}/feedback", json=body)
        assert response.status_code == 422, (body, response.text)
        (error,) = [e for e in response.json()["detail"] if field in e["loc"]]
        assert words.lower() in error["msg"].lower(), (body, error)
    with world["db"].session() as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 0
    assert len(audit_entries(world["db"])) == before


def test_feedback_wrong_study_or_result(world: dict[str, Any], api: TestClient) -> None:
    def post(study: Any, **body: Any) -> Any:
        return api.post(
            f"/api/studies/{study}/feedback", json={"decision": "accept", "reader": "dr.a", **body}
        )

    assert post("1.2.3.999").status_code == 404
    assert post(987654).status_code == 404
    other = post(world["crit"], result_id=world["pos_r"])
    assert other.status_code == 409 and "not an AI result of study" in other.json()["detail"]
    assert post(world["pos"], result_id=world["pos_shadow_r"]).status_code == 409
    assert post(world["shadow"]).status_code == 409  # only a shadow result: nothing to decide
    several = post(world["high"])
    assert several.status_code == 422
    assert str(world["high_r2"]) in several.json()["detail"][0]["msg"]
    with world["db"].session() as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 0


def test_authentication(world: dict[str, Any]) -> None:
    with client_for(world, auth=False, api_tokens={"dr.a": "tok-a", "dr.b": "tok-b"}) as c:
        assert c.get("/api/health").json()["status"] == "ok"
        none = c.get("/api/worklist")
        assert none.status_code == 401 and none.headers["www-authenticate"] == "Cookie"
        assert "sign in first" in none.json()["detail"]
        assert c.get("/api/worklist", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert (
            c.get("/api/worklist", headers={"Authorization": "Basic ZHI6YQ=="}).status_code == 401
        )
        assert c.get(f"/api/studies/{world['crit']}").status_code == 401
        assert c.get("/api/worklist", headers={"Authorization": "Bearer tok-b"}).status_code == 200
        url = f"/api/studies/{world['crit']}/feedback"
        assert c.post(url, json={"decision": "accept"}).status_code == 401
        as_a = {"Authorization": "Bearer tok-a"}
        impersonate = c.post(url, json={"decision": "accept", "reader": "dr.b"}, headers=as_a)
        assert impersonate.status_code == 403
        mine = c.post(url, json={"decision": "accept"}, headers=as_a)
        assert mine.status_code == 201 and mine.json()["reader"] == "dr.a"
    assert audit_entries(world["db"])[-1].actor == "dr.a"


def test_database_down_is_503(tmp_path: Path) -> None:
    from radpilot.web.app import create_app

    url = f"postgresql+psycopg://radpilot@127.0.0.1:{free_port()}/nothing"
    down = Database(url)
    settings = Settings(data_dir=tmp_path, database_url=url, api_tokens={"r": "tok-r"})
    app = create_app(settings, down)
    with TestClient(app, headers={"Authorization": "Bearer tok-r"}) as client:
        for path in ("/api/worklist", "/api/studies/1.2.3", "/api/health"):
            response = client.get(path)
            assert response.status_code == 503, (path, response.text)
            assert "database is unavailable" in response.json()["detail"]
        posted = client.post("/api/studies/1/feedback", json={"decision": "accept", "reader": "r"})
        assert posted.status_code == 503
    down.dispose()
