"""The retraining trigger (issue 7): confirmed labels from outcomes and decisions, stored
once; the candidate's config is a valid `radpilot train` config from the live version's
card; a real run registers the candidate as `registered`, never active; an alert with a
retrain rule starts it and the audit log says so."""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from radpilot.monitoring.alerts import AlertRules, evaluate
from radpilot.monitoring.outcomes import Outcome, record_outcome
from radpilot.monitoring.retrain import assemble_cohort, candidate_config
from radpilot.pipeline.feedback import FeedbackRequest, record_feedback
from radpilot.store import Database
from radpilot.store.models import Read, Study
from radpilot.store.models_pipeline import AuditEntry, ModelState, ModelVersion, Result
from radpilot.training.config import load_config
from tests.live_helpers import live_run

pytestmark = [pytest.mark.slow]
COUNT = 80


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("retrain")
    run = live_run(root, COUNT, 0.4, "retrain", size=128, explain=False)
    settings, version, made, truth = run.settings, run.version, run.made, run.truth
    db = Database(settings.effective_database_url)
    rng = random.Random(3)
    expected = {}
    with db.session() as session:
        positive = dict(
            session.execute(
                select(Study.study_instance_uid, Result.positive).join(
                    Result, Result.study_pk == Study.id
                )
            ).all()
        )
    for i, ((_, uid), label) in enumerate(zip(made, truth, strict=True)):
        if i < 30:  # final reports arrived
            record_outcome(db, Outcome(study_instance_uid=uid, label=label, source="report"))
            expected[uid] = label
        elif i < 70:  # a radiologist decided
            decision = "accept" if rng.random() < 0.7 else "reject"
            record_feedback(db, uid, FeedbackRequest(decision=decision, reader="dr.a"))
            expected[uid] = int(positive[uid]) if decision == "accept" else 1 - int(positive[uid])
        # the last 10: nothing confirms them
    return {"db": db, "settings": settings, "version": version, "expected": expected, "root": root}


def test_cohort_and_config(live: dict[str, Any]) -> None:
    db, settings = live["db"], live["settings"]
    cohort = assemble_cohort(db, "chest-pneumonia")
    assert (cohort.studies, cohort.from_outcome, cohort.from_feedback, cohort.unconfirmed) == (
        70,
        30,
        40,
        10,
    )
    with db.session() as session:
        stored = dict(
            session.execute(
                select(Study.study_instance_uid, Read.value)
                .join(Read, Read.study_pk == Study.id)
                .where(Read.reader == "confirmed:chest-pneumonia")
            ).all()
        )
    assert stored == live["expected"]
    again = assemble_cohort(db, "chest-pneumonia")
    assert again.added == 0 and again.studies == 70  # stored once
    config = candidate_config(db, settings, "chest-pneumonia", cohort, epochs=2)
    path = live["root"] / "train.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    parsed = load_config(path)
    assert parsed.data.kind == "cohort" and parsed.network.name == "DenseNet"
    assert parsed.version.startswith("1.0.0-retrain.")


def test_trigger_runs_and_registers_a_candidate(live: dict[str, Any]) -> None:
    db, settings = live["db"], live["settings"]
    rules = AlertRules.model_validate(
        {
            "models": [
                {
                    "model": "chest-pneumonia",
                    "positive_rate": {"validated": 0.05, "window": 20, "max_change": 0.1},
                    "retrain": {"min_cases": 40, "epochs": 1, "run": True},
                }
            ]
        }
    )
    opened = evaluate(db, settings, rules, now=dt.datetime.now(dt.UTC))
    assert len(opened) == 1  # the positive rate is far above 5 %
    with db.session() as session:
        versions = {v.version: v.state for v in session.scalars(select(ModelVersion))}
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.kind == "retrain.triggered")
        ).one()
    (candidate,) = [v for v in versions if v != "1.0.0"]
    assert versions[candidate] is ModelState.REGISTERED and versions["1.0.0"] is ModelState.ACTIVE
    assert entry.payload["registered"]["label"] == f"chest-pneumonia:{candidate}"
    assert entry.payload["studies"] == 70


def test_cli_refuses_a_small_cohort(live: dict[str, Any]) -> None:
    from radpilot.cli.main import _register, app

    _register()
    answer = CliRunner().invoke(
        app,
        [
            "--data-dir",
            str(live["settings"].data_dir),
            "monitor",
            "retrain",
            "--model",
            "chest-pneumonia",
            "--output",
            str(live["root"] / "candidate"),
            "--min-cases",
            "500",
        ],
    )
    assert answer.exit_code == 1 and "needs at least 500" in answer.output
