"""The job runner: bad models fail their own job only; shadow results stay hidden;
batched studies give the same results as one by one; re-runs add nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from torch import nn

from radpilot.core.settings import Settings
from radpilot.models.registry import Registry
from radpilot.pipeline.jobs import JobStore
from radpilot.pipeline.routing import parse_rules
from radpilot.pipeline.runner import JobRunner
from radpilot.store import Database
from radpilot.store.models_pipeline import (
    Delivery,
    Job,
    JobStatus,
    ModelVersion,
    Result,
    ResultObject,
)
from tests.model_factory import NaNNet, RaisingNet, RegionNet, SleepyNet, manifest_dict, package
from tests.pipeline_helpers import ingest, radiographs, write_studies


def add(
    registry: Registry, folder: Path, name: str, net: nn.Module, state: str = "active", **extra: Any
) -> None:
    output = {
        "activation": "sigmoid",
        "operating_points": [{"name": "op", "label": "finding", "threshold": 0.5}],
        "critical_findings": ["finding"],
    }
    manifest = manifest_dict(
        name,
        "classification",
        "torchscript",
        "model.pt",
        ["finding"],
        [32, 32],
        output=output,
        **extra,
    )
    registry.add(
        package(folder / name, net, manifest, script=isinstance(net, RaisingNet)), added_by="test"
    )
    registry.set_state(name, "1.0.0", state, actor="test")


def setup(db: Database, tmp_path: Path, studies: int = 1) -> tuple[Settings, Registry, list[str]]:
    settings = Settings(
        data_dir=tmp_path / "rp",
        job_timeout_seconds=1.5,
        destinations=[{"name": "pacs", "ae_title": "PACS", "port": 11112}],
    )
    datasets = radiographs(studies, size=64)
    assert ingest(settings, db, write_studies(tmp_path / "in", datasets)) == studies
    return settings, Registry(db, settings.models_dir), [str(d.StudyInstanceUID) for d in datasets]


def route(db: Database, settings: Settings, uids: list[str], names: list[str]) -> JobStore:
    rules = parse_rules(
        "rules:\n  - name: all\n    match: {Modality: DX}\n    models: [" + ", ".join(names) + "]\n"
    )
    store = JobStore(db, settings)
    for uid in uids:
        assert len(store.enqueue_study(uid, rules)) == len(names)
    return store


def statuses(db: Database) -> dict[str, tuple[JobStatus, str | None]]:
    with db.session() as session:
        rows = session.execute(
            select(ModelVersion.name, Job.status, Job.error).join(Job.model_version)
        ).all()
    return {name: (status, error) for name, status, error in rows}


def test_bad_models_fail_their_own_jobs_with_reasons(db: Database, tmp_path: Path) -> None:
    settings, registry, uids = setup(db, tmp_path)
    add(registry, tmp_path, "good", RegionNet(size=(32, 32)))
    add(registry, tmp_path, "raises", RaisingNet())
    add(registry, tmp_path, "nan", NaNNet())
    add(registry, tmp_path, "slow", SleepyNet(5.0))
    store = route(db, settings, uids, ["good", "raises", "nan", "slow"])
    runner = JobRunner(db, settings)
    claimed = store.claim("w", limit=10)
    assert len(claimed) == 4
    runner.run(claimed, "w")
    result = statuses(db)
    assert result["good"][0] is JobStatus.DONE
    assert result["raises"][0] is JobStatus.FAILED
    assert "deliberate failure inside the test network" in (result["raises"][1] or "")
    assert result["nan"][0] is JobStatus.FAILED and "NaN" in (result["nan"][1] or "")
    assert result["slow"][0] is JobStatus.FAILED and "did not finish within 1.5 s" in (
        result["slow"][1] or ""
    )
    with db.session() as session:
        results = list(session.scalars(select(Result)))
        assert [r.model_version.name for r in results] == ["good"]
        kinds = sorted(o.kind for o in session.scalars(select(ResultObject)))
        assert kinds == ["fhir", "heatmap", "sc", "sr", "text"]
        # Only DICOM objects of the active model are queued for the PACS.
        assert session.scalar(select(Delivery.id).limit(1)) is not None
        assert len(list(session.scalars(select(Delivery)))) == 2


def test_shadow_results_are_kept_hidden_and_never_sent(db: Database, tmp_path: Path) -> None:
    settings, registry, uids = setup(db, tmp_path)
    add(registry, tmp_path, "quiet", RegionNet(size=(32, 32)), state="shadow")
    store = route(db, settings, uids, ["quiet"])
    runner = JobRunner(db, settings)
    runner.run(store.claim("w", limit=5), "w")
    with db.session() as session:
        (result,) = session.scalars(select(Result))
        assert result.visible is False and result.score is not None
        assert list(session.scalars(select(Delivery))) == []


def test_batched_studies_equal_one_by_one_and_rerun_adds_nothing(
    db: Database, tmp_path: Path
) -> None:
    settings, registry, uids = setup(db, tmp_path, studies=3)
    add(registry, tmp_path, "region", RegionNet(size=(32, 32), region=(0.2, 0.8, 0.2, 0.8)))
    store = route(db, settings, uids, ["region"])
    runner = JobRunner(db, settings)
    claimed = store.claim("w", limit=8)
    assert len(claimed) == 3
    runner.run(claimed, "w")  # one batched forward pass for the three
    with db.session() as session:
        batched = {r.study_pk: r.score for r in session.scalars(select(Result))}
        objects = len(list(session.scalars(select(ResultObject))))
        session.execute(update(Job).values(status=JobStatus.QUEUED))
    assert len(batched) == 3 and len(set(batched.values())) == 3  # real images differ
    for job_id in sorted(claimed):  # one by one, a second time
        runner.run(store.claim("w", job_id=job_id), "w")
    with db.session() as session:
        again = {r.study_pk: r.score for r in session.scalars(select(Result))}
        assert len(list(session.scalars(select(ResultObject)))) == objects
        assert all(j.status is JobStatus.DONE for j in session.scalars(select(Job)))
    assert again == pytest.approx(batched)


def test_warm_up_loads_the_runnable_models_and_survives_a_broken_one(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings, registry, _ = setup(db, tmp_path, studies=1)
    add(registry, tmp_path / "pkgs", "live", RegionNet())
    add(registry, tmp_path / "pkgs", "shadowed", RegionNet(), state="shadow")
    add(registry, tmp_path / "pkgs", "retired", RegionNet(), state="retired")
    add(registry, tmp_path / "pkgs", "broken", RaisingNet())  # raises on every forward
    runner = JobRunner(db, settings)
    assert sorted(runner.warm_up()) == ["live:1.0.0", "shadowed:1.0.0"]
    loaded = {v.name for v in registry.list() if v.id in runner._models}
    assert loaded == {"live", "shadowed", "broken"}  # broken loads, then fails its forward
    assert "could not warm up broken:1.0.0" in caplog.text


def test_the_result_writers_warm_up_on_a_synthetic_image_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from io import BytesIO

    import pydicom

    from radpilot.pipeline.warmup import warm_result_writers

    monkeypatch.chdir(tmp_path)
    encoded = warm_result_writers()
    sr = pydicom.dcmread(BytesIO(encoded))
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sr.PatientID == "WARM-UP"
    assert list(tmp_path.iterdir()) == []  # nothing written
