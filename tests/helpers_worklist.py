"""Real pipeline rows with controlled time stamps, for the worklist, feedback and latency
tests: patients, studies, series, model versions (active and shadow), jobs, results,
result objects (with their files), deliveries and feedback, inserted as ORM rows."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from pathlib import Path
from typing import Any

import typer
from sqlalchemy.orm import Session
from typer.testing import CliRunner, Result

from radpilot.cli import stats as stats_cli
from radpilot.cli import worklist as worklist_cli
from radpilot.core.settings import Settings
from radpilot.store.models import Patient, Series, Study
from radpilot.store.models_pipeline import (
    Decision,
    Delivery,
    DeliveryStatus,
    Feedback,
    Job,
    JobStatus,
    ModelState,
    ModelVersion,
    ResultObject,
)
from radpilot.store.models_pipeline import Result as AiResult

UTC = dt.UTC
T0 = dt.datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
_ROOT = "1.2.826.0.1.3680043.8.498.4242"


class Rows:
    """Adds rows to ``session``; every UID is unique within a test."""

    def __init__(self, session: Session, data_dir: Path | None = None) -> None:
        self.session = session
        self.data_dir = data_dir
        self._n = itertools.count(1)

    def uid(self) -> str:
        return f"{_ROOT}.{next(self._n)}"

    def model(
        self, name: str, version: str = "1.0", state: ModelState = ModelState.ACTIVE
    ) -> ModelVersion:
        mv = ModelVersion(
            name=name,
            version=version,
            task="classification",
            runtime="onnx",
            manifest={"name": name, "version": version},
            weights_sha256=hashlib.sha256(f"{name}:{version}".encode()).hexdigest(),
            package_path=f"models/{name}/{version}",
            added_by="test",
            state=state,
            state_changed_by="test",
        )
        self.session.add(mv)
        self.session.flush()
        return mv

    def study(
        self,
        received: dt.datetime,
        completed: dt.datetime | None,
        modality: str = "CR",
        accession: str | None = None,
        description: str | None = None,
        body_part: str | None = "CHEST",
    ) -> Study:
        n = next(self._n)
        patient = Patient(patient_id=f"PSEUDO-{n}", sex="F" if n % 2 else "M")
        self.session.add(patient)
        self.session.flush()
        study = Study(
            study_instance_uid=self.uid(),
            patient_pk=patient.id,
            accession_number=accession,
            study_description=description,
            patient_age="054Y",
            patient_age_years=54.0,
            first_received_at=received - dt.timedelta(seconds=20),
            last_received_at=received,
            completed_at=completed,
        )
        self.session.add(study)
        self.session.flush()
        self.session.add(
            Series(
                series_instance_uid=self.uid(),
                study_pk=study.id,
                series_number=1,
                modality=modality,
                body_part_examined=body_part,
            )
        )
        self.session.flush()
        return study

    def job(
        self,
        study: Study,
        model: ModelVersion,
        status: JobStatus = JobStatus.DONE,
        queued: dt.datetime | None = None,
        started: dt.datetime | None = None,
        ended: dt.datetime | None = None,
    ) -> Job:
        job = Job(
            study_pk=study.id,
            model_version_pk=model.id,
            source_key=hashlib.sha256(self.uid().encode()).hexdigest(),
            series_uids=[],
            status=status,
            queued_at=queued or study.last_received_at,
            inference_started_at=started,
            inference_ended_at=ended,
        )
        self.session.add(job)
        self.session.flush()
        return job

    def result(
        self,
        job: Job,
        finding: str,
        score: float,
        threshold: float = 0.5,
        critical: bool = False,
        positive: bool | None = None,
        stored: dt.datetime | None = None,
    ) -> AiResult:
        model = self.session.get(ModelVersion, job.model_version_pk)
        assert model is not None
        result = AiResult(
            job_pk=job.id,
            study_pk=job.study_pk,
            model_version_pk=job.model_version_pk,
            source_key=job.source_key,
            finding=finding,
            score=score,
            threshold=threshold,
            operating_point="balanced",
            positive=score >= threshold if positive is None else positive,
            critical=critical,
            visible=model.state is not ModelState.SHADOW,
            details={"findings": [{"label": finding, "score": score}]},
            stored_at=stored or job.inference_ended_at or job.queued_at,
        )
        self.session.add(result)
        self.session.flush()
        return result

    def obj(
        self,
        result: AiResult,
        kind: str,
        content: bytes | None = None,
        name: str = "report",
        write: bool = True,
        sha256: str | None = None,
        media_type: str = "text/plain",
    ) -> ResultObject:
        content = content if content is not None else f"{kind} {result.id}".encode()
        relative = f"results/{result.id}/{kind}-{name}"
        if write:
            assert self.data_dir is not None
            path = self.data_dir / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        row = ResultObject(
            result_pk=result.id,
            kind=kind,
            name=name,
            media_type=media_type,
            path=relative,
            sha256=sha256 or hashlib.sha256(content).hexdigest(),
        )
        self.session.add(row)
        self.session.flush()
        return row

    def delivery(
        self, obj: ResultObject, delivered: dt.datetime | None, dest: str = "pacs"
    ) -> Delivery:
        row = Delivery(
            object_pk=obj.id,
            destination=dest,
            status=DeliveryStatus.DELIVERED if delivered else DeliveryStatus.PENDING,
            delivered_at=delivered,
        )
        self.session.add(row)
        self.session.flush()
        return row

    def feedback(
        self,
        result: AiResult,
        decided: dt.datetime,
        opened: dt.datetime | None = None,
        decision: Decision = Decision.ACCEPT,
        reader: str = "dr.test",
    ) -> Feedback:
        row = Feedback(
            study_pk=result.study_pk,
            result_pk=result.id,
            decision=decision,
            reader=reader,
            opened_at=opened,
            decided_at=decided,
        )
        self.session.add(row)
        self.session.flush()
        return row


def cli() -> typer.Typer:
    """``radpilot worklist`` and ``radpilot stats``, as the main command registers them."""
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """radpilot (test harness)."""

    app.command("worklist")(worklist_cli.worklist)
    app.add_typer(stats_cli.app, name="stats")
    return app


def run_cli(db_url: str, data_dir: Path, *args: str) -> Result:
    """Run ``radpilot ARGS`` against the database at ``db_url``."""
    settings = Settings(data_dir=data_dir, database_url=db_url)
    return CliRunner(env={"COLUMNS": "160"}).invoke(cli(), list(args), obj=settings)


def utc(value: Any) -> Any:
    """Times as aware UTC (SQLite gives naive UTC, PostgreSQL aware)."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value
