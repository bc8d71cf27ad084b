"""Durable jobs on SQLite and PostgreSQL: routing to jobs, claiming, retry, recovery."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

from sqlalchemy import select, update

from radpilot.core.settings import Settings
from radpilot.pipeline.jobs import JobStore
from radpilot.pipeline.routing import parse_rules
from radpilot.store import Database
from radpilot.store.models import Study
from radpilot.store.models_pipeline import Job, JobStatus, ModelState
from tests.pipeline_helpers import ingest, model_row, radiographs, write_studies

RULES = parse_rules(
    "rules:\n  - name: cxr\n    match: {Modality: DX, BodyPartExamined: CHEST}\n"
    "    models: [pneumonia, triage]\n"
)


def setup(db: Database, tmp_path: Path, studies: int = 3) -> tuple[Settings, list[str]]:
    settings = Settings(data_dir=tmp_path / "data", job_retry_seconds=10.0)
    datasets = radiographs(studies, size=32)
    assert ingest(settings, db, write_studies(tmp_path / "in", datasets)) == studies
    return settings, [str(ds.StudyInstanceUID) for ds in datasets]


def test_complete_study_becomes_one_job_per_runnable_version(db: Database, tmp_path: Path) -> None:
    settings, uids = setup(db, tmp_path, 1)
    model_row(db, "pneumonia", "1", ModelState.ACTIVE)
    model_row(db, "pneumonia", "2", ModelState.SHADOW)
    model_row(db, "pneumonia", "0", ModelState.RETIRED)
    model_row(db, "triage", "1", ModelState.REGISTERED)
    store = JobStore(db, settings)
    created = store.enqueue_study(uids[0], RULES)
    assert len(created) == 2
    # The same event again (or a restart re-announcing the study) adds nothing.
    assert store.enqueue_study(uids[0], RULES) == []
    with db.session() as session:
        jobs = list(session.scalars(select(Job)))
        versions = sorted(j.model_version.version for j in jobs)
        assert versions == ["1", "2"]
        assert all(j.status is JobStatus.QUEUED and j.rule == "cxr" for j in jobs)
        assert len({j.source_key for j in jobs}) == 2  # keyed by version too


def test_unknown_study_or_no_route_makes_nothing(db: Database, tmp_path: Path) -> None:
    settings, uids = setup(db, tmp_path, 1)
    model_row(db, "pneumonia")
    store = JobStore(db, settings)
    assert store.enqueue_study("1.2.3.4", RULES) == []
    mr_only = parse_rules(
        "rules:\n  - name: mr\n    match: {Modality: MR}\n    models: [pneumonia]\n"
    )
    assert store.enqueue_study(uids[0], mr_only) == []


def test_concurrent_claims_never_share_a_job(db: Database, tmp_path: Path) -> None:
    settings, uids = setup(db, tmp_path, 6)
    model_row(db, "pneumonia")
    store = JobStore(db, settings)
    for uid in uids:
        store.enqueue_study(uid, RULES)
    claimed: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def claimer(name: str) -> None:
        barrier.wait()
        mine: list[int] = []
        while got := store.claim(name, limit=2):
            mine += got
        claimed[name] = mine

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [job for jobs in claimed.values() for job in jobs]
    assert len(every) == 6 and len(set(every)) == 6
    with db.session() as session:
        rows = list(session.scalars(select(Job)))
        assert all(j.status is JobStatus.RUNNING and j.attempts == 1 for j in rows)
        assert {j.id: j.worker for j in rows} == {
            job: name for name, jobs in claimed.items() for job in jobs
        }


def test_failures_back_off_then_fail_for_good(db: Database, tmp_path: Path) -> None:
    settings, uids = setup(db, tmp_path, 1)
    model_row(db, "pneumonia")
    store = JobStore(db, settings)
    (job_id,) = store.enqueue_study(uids[0], RULES)
    before = dt.datetime.now(dt.UTC)
    assert store.claim("w", job_id=job_id) == [job_id]
    assert store.fail(job_id, "w", "disk hiccup") is JobStatus.QUEUED
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        not_before = (
            job.not_before if job.not_before.tzinfo else job.not_before.replace(tzinfo=dt.UTC)
        )
        assert (not_before - before).total_seconds() >= 9.9  # 10 s first backoff
        assert job.error == "disk hiccup"
    assert store.claim("w", job_id=job_id) == []  # not due yet
    for attempt in (2, 3):
        with db.session() as session:
            session.execute(update(Job).where(Job.id == job_id).values(not_before=before))
        assert store.claim("w", job_id=job_id) == [job_id]
        status = store.fail(job_id, "w", f"failure {attempt}")
        assert status is (JobStatus.QUEUED if attempt < 3 else JobStatus.FAILED)
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status is JobStatus.FAILED and job.attempts == 3


def test_model_error_fails_without_retry_and_other_worker_cannot_finish(
    db: Database, tmp_path: Path
) -> None:
    settings, uids = setup(db, tmp_path, 1)
    model_row(db, "pneumonia")
    store = JobStore(db, settings)
    (job_id,) = store.enqueue_study(uids[0], RULES)
    store.claim("owner", job_id=job_id)
    assert store.complete(job_id, "intruder") is False
    assert store.fail(job_id, "owner", "returned NaN", retry=False) is JobStatus.FAILED


def test_reaper_requeues_jobs_of_a_dead_worker(db: Database, tmp_path: Path) -> None:
    settings, uids = setup(db, tmp_path, 2)
    model_row(db, "pneumonia")
    store = JobStore(db, settings)
    first = store.enqueue_study(uids[0], RULES)[0]
    second = store.enqueue_study(uids[1], RULES)[0]
    store.claim("dead", job_id=first)
    store.claim("alive", job_id=second)
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=120)
    with db.session() as session:
        session.execute(update(Job).where(Job.id == first).values(heartbeat_at=stale))
    store.heartbeat([second], "alive")
    assert store.reap(60) == [first]
    with db.session() as session:
        dead = session.get(Job, first)
        alive = session.get(Job, second)
        assert dead is not None and alive is not None
        assert dead.status is JobStatus.QUEUED and "no heartbeat" in (dead.error or "")
        assert alive.status is JobStatus.RUNNING
    assert store.claim("new", job_id=first) == [first]
    with db.session() as session:
        job = session.get(Job, first)
        assert job is not None and job.attempts == 2


def test_a_study_with_more_instances_later_is_a_new_input(db: Database, tmp_path: Path) -> None:
    settings, uids = setup(db, tmp_path, 1)
    model_row(db, "pneumonia")
    store = JobStore(db, settings)
    assert len(store.enqueue_study(uids[0], RULES)) == 1
    extra = radiographs(1, size=32)[0]
    extra.SOPInstanceUID = extra.SOPInstanceUID + ".2"
    extra.file_meta.MediaStorageSOPInstanceUID = extra.SOPInstanceUID
    extra.InstanceNumber = 2
    assert ingest(settings, db, write_studies(tmp_path / "more", [extra])) == 1
    with db.session() as session:
        assert session.scalar(select(Study.id).where(Study.study_instance_uid == uids[0]))
    assert len(store.enqueue_study(uids[0], RULES)) == 1  # new source key
