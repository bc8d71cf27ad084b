"""`radpilot governance dossier` and `surveillance` from a real run (issue 7): studies sent
by C-STORE and read by the reference model, reference labels imported, radiologists'
decisions recorded, `radpilot validate` run, a governed transition approved by two
people; then both reports as HTML, PDF and JSON, their numbers checked against the
database."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import select
from typer.testing import CliRunner

from radpilot.governance import lifecycle
from radpilot.pipeline.feedback import FeedbackRequest, record_feedback
from radpilot.store import Database
from radpilot.store.models import Study
from radpilot.store.models_pipeline import Decision, ModelState, Result
from radpilot.store.models_users import Role
from tests.live_helpers import REPO, live_run

pytestmark = [pytest.mark.slow]

COUNT = 40


def cli(*args: str) -> str:
    from radpilot.cli.main import _register, app

    _register()
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def pdf_text(path: Path) -> str:
    return " ".join(" ".join(p.extract_text() for p in PdfReader(path).pages).split())


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("governance")
    live = live_run(root, COUNT, 0.3, "governance")
    settings, version, made, truth = live.settings, live.version, live.made, live.truth
    labels = root / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["study_instance_uid", "label", "reader"])
        writer.writerows(
            [uid, label, "reference"] for (_, uid), label in zip(made, truth, strict=True)
        )
    data = str(settings.data_dir)
    cli("--data-dir", data, "labels", "import", str(labels))
    db = Database(settings.effective_database_url)
    decisions = [Decision.ACCEPT] * 7 + [Decision.REJECT] * 3
    for (_, uid), decision in zip(made, decisions, strict=False):
        record_feedback(
            db, uid, FeedbackRequest(decision=decision, reader="dr.lee", reason_code="test")
        )
    cli(
        "--data-dir",
        data,
        "validate",
        "--model",
        version.label,
        "--labels",
        str(labels),
        "--output",
        str(root / "validation"),
        "--use-case",
        str(REPO / "models/reference/usecase.yaml"),
        "--bootstrap",
        "200",
    )
    governed = settings.model_copy(update={"governance": "governed"})
    suspend = lifecycle.request_transition(
        db,
        governed,
        version.name,
        version.version,
        ModelState.SUSPENDED,
        actor="gov1",
        role=Role.GOVERNANCE,
        reason="review after the first week",
    )
    resume = lifecycle.request_transition(
        db,
        governed,
        version.name,
        version.version,
        ModelState.ACTIVE,
        actor="gov1",
        role=Role.GOVERNANCE,
        reason="review done",
    )
    for approver in ("gov2", "gov3"):
        lifecycle.approve(
            db, governed, resume.id, actor=approver, role=Role.GOVERNANCE, comment="agreed"
        )
    from radpilot.governance import incidents
    from radpilot.store.models_alerts import IncidentKind, Severity

    reported = incidents.report(
        db, made[5][1], IncidentKind.WRONG_RESULT, "flagged a normal film", actor="dr.lee"
    )
    incidents.classify(db, reported, Severity.MODERATE, actor="gov1")
    return {
        "root": root,
        "data": data,
        "db": db,
        "version": version,
        "made": made,
        "truth": truth,
        "suspend": suspend.id,
        "resume": resume.id,
    }


def test_dossier(run: dict[str, Any]) -> None:
    out = run["root"] / "dossier"
    written = cli(
        "--data-dir",
        run["data"],
        "governance",
        "dossier",
        run["version"].label,
        "--output",
        str(out),
    )
    assert written.split() == [str(out / f"dossier.{x}") for x in ("json", "html", "pdf")]
    report = json.loads((out / "dossier.json").read_text())
    assert report["model"]["state"] == "active"
    assert "paediatric chest radiographs" in report["intended_use"]
    assert report["model_card"]["data"]["source"]
    (validation,) = report["validation_reports"]
    assert validation["integrity"] == "checked (SHA-256 as recorded)"
    assert validation["cases"] == COUNT and validation["verdict"] in ("pass", "fail")
    assert validation["summary"] and validation["criteria"]
    resume = next(t for t in report["transitions"] if t["id"] == run["resume"])
    assert resume["status"] == "applied"
    assert [a["approver"] for a in resume["approvals"]] == ["gov2", "gov3"]
    kinds = [e["kind"] for e in report["history"]]
    assert kinds[0] == "model.add" and kinds.count("model.state") == 3
    assert "validation.report" in kinds
    assert report["change_control"]["source"].startswith("radpilot default plan")
    text = pdf_text(out / "dossier.pdf")
    for words in (
        "Dossier: chest-pneumonia 1.0.0",
        "Intended use",
        "Validation",
        "gov2",
        "gov3",
        "Predetermined change control plan",
        validation["summary"][0][:40],
    ):
        assert words in text, words
    assert "<h2>6. Predetermined change control plan</h2>" in (out / "dossier.html").read_text()


def test_surveillance(run: dict[str, Any]) -> None:
    out = run["root"] / "surveillance"
    today = dt.datetime.now(dt.UTC).date()
    cli(
        "--data-dir",
        run["data"],
        "governance",
        "surveillance",
        "--model",
        "chest-pneumonia",
        "--from",
        str(today),
        "--to",
        str(today + dt.timedelta(days=1)),
        "--bucket-days",
        "1",
        "--output",
        str(out),
    )
    report = json.loads((out / "surveillance.json").read_text())
    with run["db"].session() as session:
        rows = session.execute(
            select(Study.study_instance_uid, Result.positive).join(
                Result, Result.study_pk == Study.id
            )
        ).all()
    positive = dict(rows)
    totals = report["totals"]
    assert totals["results"] == totals["studies"] == COUNT
    assert totals["positives"] == sum(positive.values())
    assert totals["decisions"] == 10 and totals["agreement"]["value"] == pytest.approx(0.7)
    called = [positive[uid] for _, uid in run["made"]]
    diseased = [c for c, t in zip(called, run["truth"], strict=True) if t == 1]
    healthy = [c for c, t in zip(called, run["truth"], strict=True) if t == 0]
    assert totals["with_reference_label"] == COUNT
    assert totals["sensitivity"]["value"] == pytest.approx(sum(diseased) / len(diseased))
    assert totals["specificity"]["value"] == pytest.approx(healthy.count(False) / len(healthy))
    sexes = report["subgroups"]["sex"]
    assert sum(g["studies"] for g in sexes.values()) == COUNT
    assert set(report["subgroups"]) == {"sex", "age", "manufacturer", "site"}
    flagged = [t for c, t in zip(called, run["truth"], strict=True) if c]
    assert totals["ppv"]["value"] == pytest.approx(sum(flagged) / len(flagged))
    assert report["buckets"][0]["sensitivity"]["value"] == pytest.approx(
        totals["sensitivity"]["value"]
    )
    estimated = totals["estimated"]
    assert estimated["estimate"] is True and estimated["n"] == COUNT
    assert estimated["calibration"].startswith("none")  # no labelled studies before the period
    assert 0 <= estimated["sensitivity"]["low"] <= estimated["sensitivity"]["high"] <= 1
    (bucket,) = report["buckets"]
    assert bucket["results"] == COUNT and bucket["decisions"] == {
        "accept": 7,
        "modify": 0,
        "reject": 3,
    }
    kinds = [a["kind"] for a in report["actions"]]
    assert kinds.count("model.state") == 3 and "model.transition.approved" in kinds
    assert report["drift"]["reference"] == "the first half of the period"
    text = pdf_text(out / "surveillance.pdf")
    assert [i["kind"] for i in report["incidents"]] == ["wrong_result"]
    assert report["incidents"][0]["severity"] == "moderate"
    for words in (
        "Surveillance: chest-pneumonia",
        "Volume, positive rate and agreement",
        "Alerts and incidents",
        "1 incident(s) reported",
        "Estimated without labels (CBPE)",
        "wrong_result",
    ):
        assert words in text, words
    assert "<svg" in (out / "surveillance.html").read_text()
