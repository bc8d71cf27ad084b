"""The monitoring dashboard (issue 7): daily rows from stored results, decisions and jobs,
the time-saved comparison with its CI, the plots and the CSV export, for admin and
governance only."""

from __future__ import annotations

import csv
import datetime as dt
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from radpilot.core.settings import Settings
from radpilot.monitoring.dashboard import dashboard
from radpilot.pipeline.feedback import FeedbackRequest, record_feedback
from radpilot.store import Database
from radpilot.store.models_users import Role
from radpilot.web import accounts
from tests.helpers_worklist import Rows

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx`", category=StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
# Noon of the latest day whose noon is at least two hours past: every row lands on that
# date and in the past, whatever the hour the tests run (pages and CSV use the real now).
TODAY = (NOW - dt.timedelta(hours=14)).replace(hour=12, minute=0, second=0)


@pytest.fixture
def world(db: Database, tmp_path: Path) -> Iterator[dict[str, Any]]:
    from radpilot.web.app import create_app

    uids = []
    with db.session() as session:
        rows = Rows(session, tmp_path)
        model = rows.model("chest", "1.0")
        for i in range(20):
            at = TODAY - dt.timedelta(hours=2) + dt.timedelta(minutes=i)
            study = rows.study(at, at + dt.timedelta(seconds=5))
            job = rows.job(study, model, ended=at + dt.timedelta(seconds=30 + i))
            rows.result(job, "pneumonia", 0.9 if i % 2 else 0.1)
            uids.append((study.study_instance_uid, at, bool(i % 2)))
        session.commit()
    for uid, at, flagged in uids:  # flagged read after 10 min, the others after 60 (+i s)
        wait = dt.timedelta(minutes=10 if flagged else 60, seconds=len(uid) % 7)
        decision = "accept" if flagged or uid.endswith(("1", "3")) else "reject"
        record_feedback(db, uid, FeedbackRequest(decision=decision, reader="dr.a"), now=at + wait)
    settings = Settings(data_dir=tmp_path, database_url=db.url)
    tokens = {}
    for name, role in (("gov", Role.GOVERNANCE), ("rad", Role.RADIOLOGIST)):
        accounts.add_user(db, name, "long enough password", role, actor="test")
        tokens[name] = {"Authorization": f"Bearer {accounts.issue_token(db, name, 't', actor='t')}"}
    with TestClient(create_app(settings, db)) as client:
        yield {"db": db, "client": client, "as": tokens}


def test_daily_rows_and_time_saved(world: dict[str, Any]) -> None:
    data = dashboard(world["db"], "chest", days=7, now=TODAY + dt.timedelta(hours=6))
    assert len(data["rows"]) == 7
    today = data["rows"][-1]
    assert today["day"] == TODAY.date().isoformat()
    assert (today["results"], today["positives"], today["decisions"]) == (20, 10, 20)
    assert today["positive_rate"] == pytest.approx(0.5)
    assert today["positive_rate_low"] < 0.5 < today["positive_rate_high"]
    assert today["latency_p50_s"] == pytest.approx(np_median([30 + i for i in range(20)]))
    assert 590 <= today["turnaround_flagged_p50_s"] <= 610
    saved = data["time_saved"]
    assert saved["flagged_n"] == saved["unflagged_n"] == 10
    assert saved["saved_s"] == pytest.approx(3000, abs=10)
    assert saved["saved_low_s"] <= saved["saved_s"] <= saved["saved_high_s"]
    assert all(r["results"] == 0 for r in data["rows"][:-1])


def np_median(values: list[int]) -> float:
    ordered = sorted(values)
    return (ordered[9] + ordered[10]) / 2


def test_pages_plots_csv_and_roles(world: dict[str, Any]) -> None:
    c, gov, rad = world["client"], world["as"]["gov"], world["as"]["rad"]
    assert c.get("/api/dashboard.csv?model=chest", headers=rad).status_code == 403
    assert c.get("/api/dashboard.csv?model=nothing", headers=gov).status_code == 404
    answer = c.get("/api/dashboard.csv?model=chest&days=3", headers=gov)
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    by_day = {row["day"]: row for row in rows}
    assert len(rows) == 3 and by_day[TODAY.date().isoformat()]["results"] == "20"
    for plot in ("volume", "positive_rate", "agreement", "performance", "latency", "turnaround"):
        png = c.get(f"/api/dashboard/{plot}.png?model=chest", headers=gov)
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG"), plot
    assert c.get("/api/dashboard/nope.png?model=chest", headers=gov).status_code == 404
    for attribute in ("sex", "age", "manufacturer", "site"):
        png = c.get(f"/api/dashboard/subgroups/{attribute}.png?model=chest", headers=gov)
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG"), attribute
    assert c.get("/api/dashboard/subgroups/race.png?model=chest", headers=gov).status_code == 404
    assert c.get("/api/dashboard/subgroups/sex.png?model=chest", headers=rad).status_code == 403
    assert (
        'src="/api/dashboard/subgroups/sex.png'
        in c.get("/dashboard?model=chest", headers={**gov, "Accept": "text/html"}).text
    )
    page = c.get("/dashboard?model=chest", headers={**gov, "Accept": "text/html"})
    assert page.status_code == 200 and "sooner than unflagged ones" in page.text
    assert 'id="time-saved-activation"' in page.text and "has not been active" in page.text
    assert "<th>Sensitivity</th>" in page.text
    assert 'id="dashboard-subgroups"' in page.text and "<td>sex</td>" in page.text


def test_performance_over_time_and_turnaround_around_activation(
    db: Database, tmp_path: Path
) -> None:
    """Sensitivity and specificity per day against reference labels with the manifest's
    validated figures drawn in; report turnaround before against after activation."""
    from radpilot.governance.audit import AuditLog
    from radpilot.monitoring.outcomes import Outcome, record_outcome
    from radpilot.store.models import Read

    activated = AuditLog(db).append(
        "model.state", "admin", "chest:1.0", {"from": "shadow", "to": "active"}
    )
    at = activated.at if activated.at.tzinfo else activated.at.replace(tzinfo=dt.UTC)
    reports: list[tuple[str, dt.datetime]] = []
    with db.session() as session:
        rows = Rows(session, tmp_path)
        model = rows.model("chest", "1.0")
        model.manifest = {
            "name": "chest",
            "version": "1.0",
            "applies_to": {"modalities": ["CR"]},
            "output": {
                "default_operating_point": "youden",
                "operating_points": [
                    {"name": "high", "label": "pneumonia", "threshold": 0.8, "sensitivity": 0.7},
                    {"name": "youden", "label": "pneumonia", "threshold": 0.5,
                     "sensitivity": 0.9, "specificity": 0.8},
                ],
            },
        }  # fmt: skip
        day = at.replace(hour=12, minute=0, second=0, microsecond=0)
        for i in range(20):  # 10 sick (8 flagged), 10 well (7 not flagged), stored that day
            study = rows.study(day - dt.timedelta(minutes=30 + i), day)
            job = rows.job(study, model, ended=day - dt.timedelta(minutes=i))
            sick = i < 10
            flagged = i < 8 or 10 <= i < 13
            rows.result(job, "pneumonia", 0.9 if flagged else 0.1)
            session.add(Read(study_pk=study.id, finding="pneumonia", value=int(sick)))
        for i in range(12):  # reported after 4 h before activation, after 1 h since
            for before, wait in ((True, 4 * 3600), (False, 3600)):
                received = at + dt.timedelta(days=-3 if before else 2, minutes=i)
                study = rows.study(received, received)
                reports.append(
                    (study.study_instance_uid, received + dt.timedelta(seconds=wait + 60 * i))
                )
        ct = rows.study(at + dt.timedelta(days=1), at + dt.timedelta(days=1), modality="CT")
        reports.append((ct.study_instance_uid, at + dt.timedelta(days=5)))  # not the model's
        early = rows.study(at + dt.timedelta(days=1), at + dt.timedelta(days=1))
        reports.append((early.study_instance_uid, at))  # a report before the images
        far = rows.study(at - dt.timedelta(days=60), at - dt.timedelta(days=60))
        reports.append((far.study_instance_uid, at - dt.timedelta(days=59)))  # outside 30 days
        session.commit()
    for uid, when in reports:
        stored, why = record_outcome(db, Outcome(study_instance_uid=uid, label=0, at=when))
        assert stored is not None, why

    data = dashboard(db, "chest", days=30, now=day + dt.timedelta(hours=1))
    that_day = next(r for r in data["rows"] if r["day"] == day.date().isoformat())
    assert that_day["labelled"] == 20
    assert that_day["sensitivity"] == pytest.approx(0.8)
    assert that_day["specificity"] == pytest.approx(0.7)
    assert that_day["sensitivity_low"] < 0.8 < that_day["sensitivity_high"]
    assert data["validated"] == {
        "operating_point": "youden",
        "sensitivity": 0.9,
        "specificity": 0.8,
    }
    turnaround = data["activation"]
    assert turnaround["activated_at"] == at.isoformat(timespec="seconds")
    assert (turnaround["before_n"], turnaround["after_n"]) == (12, 12)
    assert turnaround["before_median_s"] == pytest.approx(4 * 3600 + 60 * 5.5)
    assert turnaround["after_median_s"] == pytest.approx(3600 + 60 * 5.5)
    assert turnaround["saved_s"] == pytest.approx(3 * 3600)
    assert 0 < turnaround["saved_low_s"] <= 3 * 3600 <= turnaround["saved_high_s"]
    assert turnaround["modalities"] == ["CR"]
    with db.session() as session:  # the non-outcome reads gave no report time
        assert session.query(Read).filter(Read.reader == "reference").count() == 20


def test_input_drift_per_day(db: Database, tmp_path: Path) -> None:
    """Each day's studies against the model's studies before the window: a day like the
    reference drifts nowhere; a day with a higher positive rate and moved embeddings
    drifts on both, and the CSV and the drift plot carry it."""
    import numpy as np

    from radpilot.store.models_pipeline import ResultEmbedding
    from radpilot.web.app import create_app

    rng = np.random.default_rng(11)
    now = dt.datetime.now(dt.UTC).replace(hour=18, minute=0, second=0, microsecond=0)
    quiet_day, moved_day = now - dt.timedelta(days=3), now - dt.timedelta(days=1)
    with db.session() as session:
        rows = Rows(session, tmp_path)
        model = rows.model("chest", "1.0")
        plan = [(now - dt.timedelta(days=40, hours=i), 0.2, 0.0) for i in range(40)]
        plan += [(quiet_day - dt.timedelta(minutes=i), 0.2, 0.0) for i in range(20)]
        plan += [(moved_day - dt.timedelta(minutes=i), 0.9, 1.5) for i in range(20)]
        for number, (at, rate, shift) in enumerate(plan):
            study = rows.study(at, at + dt.timedelta(seconds=5))
            job = rows.job(study, model, ended=at + dt.timedelta(seconds=30))
            positive = (number % 10) < rate * 10
            result = rows.result(job, "pneumonia", 0.9 if positive else 0.1)
            vector = (rng.normal(size=16) + shift).astype("<f4")
            session.add(
                ResultEmbedding(result_pk=result.id, dimensions=16, vector=vector.tobytes())
            )
        session.commit()
    data = dashboard(db, "chest", days=30, now=now, drift=True)
    assert data["drift_reference"] == {
        "reference": "the model's studies before the window",
        "reference_n": 40,
    }
    by_day = {r["day"]: r for r in data["rows"]}
    quiet, moved = by_day[quiet_day.date().isoformat()], by_day[moved_day.date().isoformat()]
    assert quiet["drift_studies"] == moved["drift_studies"] == 20
    assert quiet["drifted_fields"] == 0 and quiet["drifted"] == ""
    assert {"positive_rate", "embedding"} <= set(moved["drifted"].split(", "))
    assert moved["embedding_mmd"] > 10 * max(quiet["embedding_mmd"], 0.01)
    assert by_day[now.date().isoformat()]["drift_studies"] is None  # no studies that day
    assert dashboard(db, "chest", days=30, now=now)["rows"][-2]["drifted"] is None  # not asked

    settings = Settings(data_dir=tmp_path, database_url=db.url)
    accounts.add_user(db, "gov", "long enough password", Role.GOVERNANCE, actor="test")
    gov = {"Authorization": f"Bearer {accounts.issue_token(db, 'gov', 't', actor='t')}"}
    with TestClient(create_app(settings, db)) as client:
        answer = client.get("/api/dashboard.csv?model=chest&days=30", headers=gov)
        csv_rows = {r["day"]: r for r in csv.DictReader(io.StringIO(answer.text))}
        assert "embedding" in csv_rows[moved_day.date().isoformat()]["drifted"]
        png = client.get("/api/dashboard/drift.png?model=chest", headers=gov)
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
