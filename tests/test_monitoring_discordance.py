"""Discordance CUSUM (issue 7): its false-alarm rate is the one stated, and decisions that
disagree more after a point are detected, from decisions stored through the pipeline."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from radpilot.monitoring.discordance import Cusum, arl, decision_stream, threshold_for_arl
from radpilot.pipeline.feedback import FeedbackRequest, record_feedback
from radpilot.store import Database
from tests.helpers_worklist import T0, Rows

P0, P1, ARL0 = 0.1, 0.2, 1000.0


def test_false_alarm_rate_is_the_stated_one() -> None:
    h = threshold_for_arl(P0, P1, ARL0)
    cusum = Cusum(P0, P1, h)
    rng = np.random.default_rng(11)
    stream = list(rng.random(300_000) < P0)  # nothing changes
    alarms, start = 0, 0
    while True:  # count alarms with restarts, as a monitor would
        found = cusum.run(stream[start:]).alarm_at
        if found is None:
            break
        alarms, start = alarms + 1, start + found
    observed = len(stream) / max(alarms, 1)
    assert 0.75 * ARL0 <= observed <= 1.35 * ARL0, (h, alarms, observed)
    assert arl(P0, P1, h, 0.3, runs=300) < 60  # tripled discordance: found within ~60


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="0 < p0 < p1 < 1"):
        Cusum(0.2, 0.1, 3.0)
    with pytest.raises(ValueError, match="positive"):
        Cusum(0.1, 0.2, 0.0)


def test_rising_discordance_in_stored_decisions(db: Database, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    change = 400
    discordant = list(rng.random(change) < P0) + list(rng.random(200) < 0.35)
    with db.session() as session:
        rows = Rows(session, tmp_path)
        model = rows.model("chest", "1.0")
        uids = []
        for i in range(len(discordant)):
            study = rows.study(
                T0 + dt.timedelta(minutes=i), T0 + dt.timedelta(minutes=i, seconds=9)
            )
            rows.result(rows.job(study, model), "pneumonia", 0.8)
            uids.append(study.study_instance_uid)
        session.commit()
    for i, (uid, bad) in enumerate(zip(uids, discordant, strict=True)):
        record_feedback(db, uid, FeedbackRequest(decision="reject" if bad else "accept",
                                                 reader="dr.a"),
                        now=T0 + dt.timedelta(hours=1, minutes=i))  # fmt: skip
    with db.session() as session:
        stream = decision_stream(session, "chest")
    assert stream == discordant
    result = Cusum(P0, P1, threshold_for_arl(P0, P1, ARL0)).run(stream)
    assert result.alarm_at is not None and change < result.alarm_at <= change + 80, result.alarm_at

    from radpilot.cli.main import _register, app

    _register()
    answer = CliRunner().invoke(
        app, ["--data-dir", str(tmp_path), "monitor", "discordance", "--model", "chest",
              "--p0", str(P0), "--format", "json"],
        env={"RADPILOT_DATABASE_URL": db.url},
    )  # fmt: skip
    assert answer.exit_code == 3, answer.output
    body = json.loads(answer.output)
    assert body["alarm_at"] == result.alarm_at and body["decisions"] == 600
