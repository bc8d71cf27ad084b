"""Run claimed jobs: load the study, call the model, store the result, queue delivery.

The same code runs in the embedded pool and in Celery workers. A model that raises,
returns NaN or times out fails its own job with the reason; the study, the other models'
results and the service are untouched. A result is keyed by (study, model version,
source key): running a job twice stores one result and one set of objects.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pydicom
from pydicom import Dataset
from sqlalchemy import select

from radpilot.core.errors import ModelError, ModelTimeoutError
from radpilot.core.logging import ref
from radpilot.core.settings import Settings
from radpilot.governance.audit import AuditLog
from radpilot.models.inference import LoadedModel, load_model
from radpilot.models.prediction import Prediction
from radpilot.models.registry import RUNNABLE, VISIBLE, Registry
from radpilot.pipeline.jobs import JobStore
from radpilot.pipeline.outputs import write_outputs
from radpilot.pipeline.warmup import warm_result_writers
from radpilot.results.context import ResultContext
from radpilot.results.outbox import enqueue
from radpilot.results.report import StudyInfo
from radpilot.store import Database
from radpilot.store.models import Instance, Series, Study, utcnow
from radpilot.store.models_pipeline import (
    Job,
    ModelVersion,
    Result,
    ResultEmbedding,
    ResultObject,
)

__all__ = ["JobRunner", "call_with_timeout"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def call_with_timeout(fn: Callable[[], T], seconds: float, what: str) -> T:
    """Run ``fn`` in its own thread and wait at most ``seconds``.

    A thread cannot be killed: on timeout it is left to finish on its own (daemon) and
    its result is discarded; the caller gets :class:`ModelTimeoutError` at once.

    Raises
    ------
    ModelTimeoutError
        If ``fn`` has not returned in time.
    """
    box: dict[str, object] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="radpilot-model-call", daemon=True).start()
    if not done.wait(seconds):
        raise ModelTimeoutError(f"{what} did not finish within {seconds:g} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


@dataclass
class _Work:
    job_id: int
    version: ModelVersion
    study: StudyInfo
    source_key: str
    sources: list[Dataset]


class JobRunner:
    """Executes jobs for one worker (thread pool or Celery process)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        on_delivery: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.jobs = JobStore(db, settings)
        self.registry = Registry(db, settings.models_dir)
        self.audit = AuditLog(db)
        self.on_delivery = on_delivery
        self._models: dict[int, LoadedModel] = {}
        self._models_lock = threading.Lock()

    # model cache -----------------------------------------------------------------------
    def model(self, version: ModelVersion) -> LoadedModel:
        """The loaded model of ``version`` (loaded once per process)."""
        with self._models_lock:
            loaded = self._models.get(version.id)
            if loaded is None:
                package = self.registry.package_of(version)
                loaded = load_model(package, explain=self.settings.explain)
                self._models[version.id] = loaded
            return loaded

    def warm_up(self) -> list[str]:
        """Build one throwaway SR (:mod:`radpilot.pipeline.warmup`), then load every
        runnable (shadow or active) model and run its network three times on a zero batch
        of its input size.

        The first study after a start then pays neither for loading the weights, ONNX
        Runtime's session set-up nor TorchScript's profiling executor, which optimises the
        graph on its first calls (in the pipeline benchmark the first radiograph took
        1.9 s against 0.7 s for the others). A model that fails here is logged and left to
        its first job to report. Returns the models warmed, as ``name:version``.
        """
        try:
            warm_result_writers()
        except Exception as exc:  # noqa: BLE001 - only a head start; the first job would tell
            log.warning("could not warm up the result writers (%s)", exc)
        warmed = []
        for version in self.registry.list():
            if version.state not in RUNNABLE:
                continue
            try:
                loaded = self.model(version)
                spec = loaded.manifest.input
                batch = np.zeros((1, spec.channels, *spec.size), dtype=np.float32)
                for _ in range(3):
                    loaded.network.forward(batch)
            except Exception as exc:  # noqa: BLE001 - a start must not fail on one model
                log.warning("could not warm up %s:%s (%s)", version.name, version.version, exc)
                continue
            warmed.append(f"{version.name}:{version.version}")
        return warmed

    # entry points ----------------------------------------------------------------------
    def run(self, job_ids: Sequence[int], worker: str) -> None:
        """Run claimed jobs; jobs of one 2D model share one batched forward pass."""
        works: list[_Work] = []
        for job_id in job_ids:
            try:
                works.append(self._load(job_id))
            except Exception as exc:  # noqa: BLE001 - a job's failure must never stop the worker
                self.jobs.fail(job_id, worker, f"could not load the study: {exc}")
        by_version: dict[int, list[_Work]] = {}
        for work in works:
            by_version.setdefault(work.version.id, []).append(work)
        for group in by_version.values():
            self._run_group(group, worker)

    def _run_group(self, group: list[_Work], worker: str) -> None:
        version = group[0].version
        try:
            model = self.model(version)
        except Exception as exc:  # noqa: BLE001 - a job's failure must never stop the worker
            for work in group:
                self.jobs.fail(work.job_id, worker, f"model {version.label} did not load: {exc}")
            return
        timeout = model.manifest.timeout_seconds or self.settings.job_timeout_seconds
        if len(group) > 1 and model.manifest.input.dimensions == 2:
            started = utcnow()
            try:
                predictions = call_with_timeout(
                    lambda: model.predict_batch([w.sources for w in group], explain=False),
                    timeout * len(group),
                    f"model {version.label}",
                )
                for prediction in predictions:
                    prediction.check()
            except Exception:  # noqa: BLE001 - a job's failure must never stop the worker
                log.warning("batch of %d failed; running its jobs one by one", len(group))
            else:
                ended = utcnow()
                for work, prediction in zip(group, predictions, strict=True):
                    self._finish(model, work, prediction, worker, (started, ended), timeout)
                return
        for work in group:
            self._run_one(model, work, worker, timeout)

    def _run_one(self, model: LoadedModel, work: _Work, worker: str, timeout: float) -> None:
        label = work.version.label
        started = utcnow()
        try:
            prediction = call_with_timeout(
                lambda: model.predict(work.sources, explain=False), timeout, f"model {label}"
            )
            prediction.check()
        except ModelError as exc:  # deterministic: the same input fails the same way
            self.jobs.fail(work.job_id, worker, f"model {label}: {exc}", retry=False)
            return
        except Exception as exc:  # noqa: BLE001 - a job's failure must never stop the worker
            self.jobs.fail(work.job_id, worker, f"model {label} failed: {exc!r}")
            return
        self._finish(model, work, prediction, worker, (started, utcnow()), timeout)

    def _finish(
        self,
        model: LoadedModel,
        work: _Work,
        prediction: Prediction,
        worker: str,
        inference: tuple[dt.datetime, dt.datetime],
        timeout: float,
    ) -> None:
        """Store the findings and send the SR first; then the heatmap and pictures."""
        self.jobs.mark_inference(work.job_id, *inference)
        try:
            if self._store(work, prediction, "primary") and self.on_delivery is not None:
                self.on_delivery()
            self._explain(model, work, prediction, timeout)
            if self._store(work, prediction, "secondary") and self.on_delivery is not None:
                self.on_delivery()
        except Exception as exc:
            log.exception("job %d: storing the result failed", work.job_id)
            self.jobs.fail(work.job_id, worker, f"storing the result failed: {exc!r}")
            return
        self.jobs.complete(work.job_id, worker)

    def _explain(
        self, model: LoadedModel, work: _Work, prediction: Prediction, timeout: float
    ) -> None:
        """Add the heatmap; a failing explainer costs the picture, never the result."""
        if model.explainer is None or prediction.heatmap is not None:
            return
        try:
            prediction.heatmap = call_with_timeout(
                lambda: model.explain(work.sources, prediction),
                timeout,
                f"heatmap of {work.version.label}",
            )
        except Exception as exc:  # noqa: BLE001 - the key image goes out without a heatmap
            log.warning("job %d: no heatmap (%s)", work.job_id, exc)

    # loading and storing ---------------------------------------------------------------
    def _load(self, job_id: int) -> _Work:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise LookupError(f"job {job_id} does not exist")
            study = session.get(Study, job.study_pk)
            version = session.get(ModelVersion, job.model_version_pk)
            if study is None or version is None:
                raise LookupError(f"job {job_id} refers to a missing study or model")
            paths = list(
                session.scalars(
                    select(Instance.file_path)
                    .join(Series, Instance.series_pk == Series.id)
                    .where(Series.series_instance_uid.in_(job.series_uids))
                    .order_by(Series.series_number, Instance.instance_number, Instance.id)
                )
            )
            modality = session.scalar(
                select(Series.modality).where(Series.study_pk == study.id).limit(1)
            )
            info = StudyInfo(
                study_instance_uid=study.study_instance_uid,
                accession_number=study.accession_number,
                patient_id=study.patient.patient_id,
                study_date=study.study_date,
                modality=modality,
            )
            source_key = job.source_key
        root = self.settings.archive_dir
        sources: list[Dataset] = [pydicom.dcmread(root / path) for path in paths]
        return _Work(job_id, version, info, source_key, sources)

    def _store(self, work: _Work, prediction: Prediction, phase: str) -> bool:
        version = work.version
        visible = version.state in VISIBLE
        ctx = ResultContext(
            model_name=version.name,
            model_version=version.version,
            weights_sha256=version.weights_sha256,
            manufacturer=str(version.manifest.get("manufacturer", "radpilot")),
            task=version.task,
            operating_point=(prediction.headline.operating_point if prediction.headline else None),
            result_key=f"{work.study.study_instance_uid}/{version.id}/{work.source_key}",
        )
        folder = self.settings.results_dir / version.name / version.version / work.source_key[:32]
        t0 = time.perf_counter()
        files = write_outputs(
            prediction, work.sources, ctx, work.study, self.settings.data_dir, folder, phase=phase
        )
        log.debug(
            "job %d: %d object(s) written in %.3f s",
            work.job_id,
            len(files),
            time.perf_counter() - t0,
        )
        headline = prediction.headline
        with self.db.session() as session:
            result = session.scalars(
                select(Result).where(
                    Result.study_pk
                    == select(Study.id)
                    .where(Study.study_instance_uid == work.study.study_instance_uid)
                    .scalar_subquery(),
                    Result.model_version_pk == version.id,
                    Result.source_key == work.source_key,
                )
            ).one_or_none()
            if result is None:
                job = session.get(Job, work.job_id)
                if job is None:
                    raise LookupError(f"job {work.job_id} disappeared while running")
                result = Result(
                    job_pk=job.id,
                    study_pk=job.study_pk,
                    model_version_pk=version.id,
                    source_key=work.source_key,
                    finding=headline.label if headline else None,
                    score=headline.score if headline else None,
                    threshold=headline.threshold if headline else None,
                    operating_point=headline.operating_point if headline else None,
                    positive=bool(headline and headline.positive),
                    critical=bool(headline and headline.critical),
                    visible=visible,
                    details=prediction.summary(),
                )
                session.add(result)
                session.flush()
                if prediction.embedding is not None:
                    session.add(
                        ResultEmbedding(
                            result_pk=result.id,
                            dimensions=int(prediction.embedding.size),
                            vector=prediction.embedding.astype("<f4").tobytes(),
                        )
                    )
                self.audit.append(
                    "result.stored",
                    "radpilot",
                    work.study.study_instance_uid,
                    {
                        "result": result.id,
                        "job": work.job_id,
                        "model": version.name,
                        "version": version.version,
                        "weights_sha256": version.weights_sha256,
                        "finding": result.finding,
                        "score": result.score,
                        "positive": result.positive,
                        "visible": visible,
                    },
                    session=session,
                )
            existing = {(o.kind, o.name): o for o in result.objects}
            queued = False
            for out in files:
                obj = existing.get((out.kind, out.name))
                if obj is None:
                    obj = ResultObject(
                        result_pk=result.id,
                        kind=out.kind,
                        name=out.name,
                        sop_instance_uid=out.sop_instance_uid,
                        sop_class_uid=out.sop_class_uid,
                        media_type=out.media_type,
                        path=out.relative_path,
                        sha256=out.sha256,
                    )
                    session.add(obj)
                    session.flush()
                if visible and self.settings.destinations and out.media_type == "application/dicom":
                    queued |= bool(enqueue(session, obj, self.settings.destinations))
        if phase == "primary":
            log.info(
                "study %s: %s -> %s %.3f",
                ref(work.study.study_instance_uid),
                version.label,
                headline.label if headline else "-",
                headline.score if headline else float("nan"),
            )
        return queued
