"""Latency statistics from the time stamps on real rows, on SQLite and PostgreSQL.

Stamps are drawn from a seeded generator and kept here as well; every stage's count,
p50, p95 and maximum must equal what ``numpy.percentile`` (linear, its default) gives on
the durations computed here from the same stamps. Some jobs miss stages on purpose.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from radpilot.pipeline.latency import END_TO_END, STAGES, latency_report, percentile
from radpilot.store import Database
from radpilot.store.models_pipeline import JobStatus, ModelState
from tests.helpers_worklist import T0, Rows, run_cli

Stamps = dict[str, dt.datetime | None]


def seconds(rng: random.Random, low: float, high: float) -> dt.timedelta:
    return dt.timedelta(microseconds=round(rng.uniform(low, high) * 1e6))


def build(db: Database) -> tuple[list[Stamps], list[Stamps]]:
    """Jobs and studies with known stamps; returns what the report must count."""
    rng = random.Random(20240501)
    jobs: list[Stamps] = []
    studies: list[Stamps] = []
    with db.session() as session:
        rows = Rows(session)
        a, b = rows.model("cxr-a"), rows.model("cxr-b", "2")
        shadow = rows.model("cxr-shadow", "9", ModelState.SHADOW)
        for i in range(14):
            received = T0 + dt.timedelta(hours=i) + seconds(rng, 0, 60)
            complete = received + seconds(rng, 30, 60)
            study = rows.study(received, complete)
            studies.append({"received": received, "complete": complete})
            queued = complete + seconds(rng, 0.01, 2)
            if i == 10:
                queued = complete - dt.timedelta(seconds=10)  # out of order
            start = queued + seconds(rng, 0, 5)
            end = start + seconds(rng, 0.1, 3)
            if i == 7:  # failed during inference: no end, no result
                rows.job(study, a, JobStatus.FAILED, queued, start, None)
                jobs.append({
                    "received": received, "complete": complete, "queued": queued,
                    "inference_start": start, "inference_end": None, "stored": None,
                    "delivered": None, "opened": None, "decided": None,
                })  # fmt: skip
                continue
            job = rows.job(study, a, JobStatus.DONE, queued, start, end)
            stored = end + seconds(rng, 0.01, 0.5)
            result = rows.result(job, "pneumonia", rng.random(), stored=stored)
            sr, seg = rows.obj(result, "sr", write=False), rows.obj(result, "seg", write=False)
            rows.obj(result, "sc", write=False, name="key")
            delivered: dt.datetime | None = None
            if i != 3:  # i == 3: nothing delivered yet
                first = stored + seconds(rng, 0.5, 5)
                delivered = first + seconds(rng, 0, 2)
                rows.delivery(sr, first)
                rows.delivery(seg, delivered)  # the last one counts
            rows.delivery(sr, None, dest="second-pacs")  # pending: ignored
            opened: dt.datetime | None = None
            decided: dt.datetime | None = None
            if i not in (4, 5):
                opened = (delivered or stored) + seconds(rng, 60, 3600)
                decided = opened + seconds(rng, 5, 300)
                if i == 6:
                    opened = None  # a client that did not say when it opened the study
                if i == 8:  # a later second decision does not count
                    rows.feedback(result, decided + dt.timedelta(hours=5), decided)
                rows.feedback(result, decided, opened)
            jobs.append({
                "received": received, "complete": complete, "queued": queued,
                "inference_start": start, "inference_end": end, "stored": stored,
                "delivered": delivered, "opened": opened, "decided": decided,
            })  # fmt: skip
            if i == 9:  # a second model on the same study
                q2 = complete + seconds(rng, 0, 1)
                s2, e2 = q2 + seconds(rng, 0, 1), q2 + seconds(rng, 1, 2)
                r2 = rows.result(rows.job(study, b, JobStatus.DONE, q2, s2, e2), "x", 0.1)
                jobs.append({
                    "received": received, "complete": complete, "queued": q2,
                    "inference_start": s2, "inference_end": e2, "stored": r2.stored_at,
                    "delivered": None, "opened": None, "decided": None,
                })  # fmt: skip
            if i == 0:  # a shadow job, far slower: never counted
                late = queued + dt.timedelta(days=3)
                rows.result(rows.job(study, shadow, JobStatus.DONE, queued, late, late), "y", 0.5)
    return jobs, studies


def expected(rows: list[Stamps], start: str, end: str) -> tuple[list[float], int]:
    values, negative = [], 0
    for row in rows:
        a, b = row[start], row[end]
        if a is not None and b is not None:
            d = (b - a).total_seconds()
            if d < 0:
                negative += 1
            else:
                values.append(d)
    return values, negative


def test_stages_match_numpy(db: Database) -> None:
    jobs, studies = build(db)
    with db.session() as session:
        report = latency_report(session)
    assert report.jobs == len(jobs) == 15
    assert not report.empty
    got = {s.stage: s for s in (*report.stages, *report.end_to_end)}
    for name, start, end in (*STAGES, *END_TO_END):
        values, negative = expected(studies if name == "received_to_complete" else jobs, start, end)
        stats = got[name]
        assert (stats.count, stats.out_of_order) == (len(values), negative), name
        p50, p95 = np.percentile(values, [50, 95])
        assert stats.p50_seconds == pytest.approx(p50, abs=1e-6), name
        assert stats.p95_seconds == pytest.approx(p95, abs=1e-6), name
        assert stats.max_seconds == pytest.approx(max(values), abs=1e-6), name
    # Each missing stage is missing where it was left out:
    assert got["received_to_complete"].count == 14  # per study, not per job
    assert got["complete_to_queued"].out_of_order == 1
    assert got["inference"].count == 14  # the failed job never ended
    assert got["stored_to_delivered"].count == 12  # failed, undelivered, second model
    assert got["opened_to_decided"].count == 10  # not 4, 5 (undecided), 6 (no opened_at), 7
    assert got["received_to_decided"].count == 11
    assert got["inference"].max_seconds is not None and got["inference"].max_seconds < 10


def test_filters_cli_and_no_data(db: Database, tmp_path: Path) -> None:
    empty = run_cli(db.url, tmp_path, "stats", "latency")
    assert empty.exit_code == 0, empty.output
    assert "no data" in empty.stdout
    empty_json = json.loads(
        run_cli(db.url, tmp_path, "stats", "latency", "--format", "json").stdout
    )
    assert empty_json["no_data"] is True and empty_json["jobs"] == 0
    assert all(s["p50_seconds"] is None for s in empty_json["stages"])

    jobs, _ = build(db)
    with db.session() as session:
        only_b = latency_report(session, model="cxr-b:2")
        later = latency_report(session, since=T0 + dt.timedelta(hours=11, minutes=30))
    assert only_b.jobs == 1 and {s.stage: s.count for s in only_b.stages}["inference"] == 1
    assert later.jobs == 2  # studies 12 and 13

    out = run_cli(db.url, tmp_path, "stats", "latency", "--format", "json")
    assert out.exit_code == 0, out.output
    body: dict[str, Any] = json.loads(out.stdout)
    assert body["no_data"] is False and body["jobs"] == len(jobs)
    inference = next(s for s in body["stages"] if s["stage"] == "inference")
    values, _ = expected(jobs, "inference_start", "inference_end")
    assert inference["p95_seconds"] == pytest.approx(float(np.percentile(values, 95)), abs=1e-6)
    assert "numpy.percentile" in body["percentile_method"]
    table = run_cli(db.url, tmp_path, "stats", "latency", "--model", "cxr-a")
    assert table.exit_code == 0 and "p95" in table.stdout and "received -> decided" in table.stdout
    bad = run_cli(db.url, tmp_path, "stats", "latency", "--since", "yesterday")
    assert bad.exit_code == 2 and "ISO 8601" in bad.output


@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=50),
    st.floats(0, 100, allow_nan=False),
)
def test_percentile_is_numpy_linear(values: list[float], q: float) -> None:
    assert percentile(values, q) == pytest.approx(
        float(np.percentile(values, q)), rel=1e-9, abs=1e-9
    )


def test_percentile_refuses_nothing() -> None:
    with pytest.raises(ValueError, match="at least one"):
        percentile([], 50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)
