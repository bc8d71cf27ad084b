"""Durable jobs: rows in the database, claimed by compare-and-set, never lost.

The database holds state; a queue (the embedded pool's wake-up, or Celery's broker) only
carries job ids. A worker claims a job by flipping it from ``queued`` to ``running`` in one
``UPDATE … WHERE status = 'queued'``; whoever's update touched the row owns it, on SQLite
and PostgreSQL alike. A running job carries a heartbeat; a job whose heartbeat is older
than the lease belonged to a dead worker and is queued again by :meth:`JobStore.reap`.
Outputs are keyed by (study, model version, source key), so a re-run replaces nothing and
adds nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from radpilot.core.logging import ref
from radpilot.core.settings import Settings
from radpilot.models.registry import RUNNABLE
from radpilot.pipeline.routing import RuleSet, SeriesView, route
from radpilot.store import Database
from radpilot.store.models import Instance, Series, Study, utcnow
from radpilot.store.models_pipeline import Job, JobStatus, ModelVersion

__all__ = ["JobStore", "source_key"]

log = logging.getLogger(__name__)


def source_key(model_version_pk: int, sop_instance_uids: Sequence[str]) -> str:
    """Digest of the model version and the exact instances it is given."""
    digest = hashlib.sha256(str(model_version_pk).encode())
    for uid in sorted(sop_instance_uids):
        digest.update(b"\0" + uid.encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class _Candidate:
    version: ModelVersion
    series_uids: tuple[str, ...]
    rules: tuple[str, ...]


def _versions_for(session: Session, reference: str) -> list[ModelVersion]:
    name, _, version = reference.partition(":")
    query = select(ModelVersion).where(
        ModelVersion.name == name,
        ModelVersion.state.in_(RUNNABLE),
    )
    if version:
        query = query.where(ModelVersion.version == version)
    return list(session.scalars(query))


class JobStore:
    """Create, claim, finish and recover jobs."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    # creation ------------------------------------------------------------------------
    def enqueue_study(self, study_instance_uid: str, rules: RuleSet) -> list[int]:
        """Route a complete study and queue one job per (model version, input).

        Idempotent: the same study, version and instances never make a second job.

        Returns
        -------
        list[int]
            Ids of the jobs created now (existing ones are not repeated).
        """
        created: list[int] = []
        with self.db.session() as session:
            study = session.scalars(
                select(Study).where(Study.study_instance_uid == study_instance_uid)
            ).one_or_none()
            if study is None:
                return []
            counts = dict(
                session.execute(
                    select(Instance.series_pk, func.count(Instance.id))
                    .join(Series, Instance.series_pk == Series.id)
                    .where(Series.study_pk == study.id)
                    .group_by(Instance.series_pk)
                ).all()
            )
            views = [SeriesView.of(s, study, counts.get(s.id, 0)) for s in study.series]
            for found in route(rules, views):
                for version in _versions_for(session, found.model):
                    job = self._create(
                        session, study, _Candidate(version, found.series_uids, found.rules)
                    )
                    if job is not None:
                        created.append(job)
        if created:
            log.info("study %s: %d job(s) queued", ref(study_instance_uid), len(created))
        return created

    def _create(self, session: Session, study: Study, candidate: _Candidate) -> int | None:
        uids = list(
            session.scalars(
                select(Instance.sop_instance_uid)
                .join(Series, Instance.series_pk == Series.id)
                .where(Series.series_instance_uid.in_(candidate.series_uids))
            )
        )
        if not uids:
            return None
        key = source_key(candidate.version.id, uids)
        exists = session.scalar(
            select(Job.id).where(
                Job.study_pk == study.id,
                Job.model_version_pk == candidate.version.id,
                Job.source_key == key,
            )
        )
        if exists is not None:
            return None
        job = Job(
            study_pk=study.id,
            model_version_pk=candidate.version.id,
            source_key=key,
            series_uids=list(candidate.series_uids),
            rule=",".join(candidate.rules)[:128],
            max_attempts=self.settings.job_max_attempts,
        )
        with session.begin_nested():
            session.add(job)
            session.flush()
        return job.id

    # claiming ------------------------------------------------------------------------
    def claim(self, worker: str, limit: int = 1, job_id: int | None = None) -> list[int]:
        """Take up to ``limit`` due queued jobs (or the one named) for ``worker``.

        Returns
        -------
        list[int]
            The ids this worker now owns; concurrent claimers never share one.
        """
        now = utcnow()
        with self.db.session() as session:
            query = select(Job.id).where(Job.status == JobStatus.QUEUED, Job.not_before <= now)
            if job_id is not None:
                query = query.where(Job.id == job_id)
            candidates = list(
                session.scalars(query.order_by(Job.queued_at, Job.id).limit(limit * 4))
            )
        owned: list[int] = []
        for candidate in candidates:
            if len(owned) >= limit:
                break
            with self.db.session() as session:
                result = session.execute(
                    update(Job)
                    .where(Job.id == candidate, Job.status == JobStatus.QUEUED)
                    .values(
                        status=JobStatus.RUNNING,
                        worker=worker,
                        attempts=Job.attempts + 1,
                        started_at=now,
                        heartbeat_at=now,
                        error=None,
                    )
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    owned.append(candidate)
        return owned

    def heartbeat(self, job_ids: Sequence[int], worker: str) -> None:
        """Tell the reaper these jobs are still being worked on."""
        if not job_ids:
            return
        with self.db.session() as session:
            session.execute(
                update(Job)
                .where(Job.id.in_(job_ids), Job.worker == worker, Job.status == JobStatus.RUNNING)
                .values(heartbeat_at=utcnow())
                .execution_options(synchronize_session=False)
            )

    # finishing -----------------------------------------------------------------------
    def mark_inference(self, job_id: int, started: dt.datetime, ended: dt.datetime) -> None:
        """Record when the model call began and ended (latency stamps)."""
        with self.db.session() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(inference_started_at=started, inference_ended_at=ended)
                .execution_options(synchronize_session=False)
            )

    def complete(self, job_id: int, worker: str) -> bool:
        """Mark done; False if the job was taken from this worker meanwhile."""
        with self.db.session() as session:
            result = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.worker == worker, Job.status == JobStatus.RUNNING)
                .values(status=JobStatus.DONE, finished_at=utcnow(), error=None)
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def fail(self, job_id: int, worker: str, reason: str, *, retry: bool = True) -> JobStatus:
        """Record a failure: queue again with backoff while attempts remain, else fail.

        Returns
        -------
        JobStatus
            ``queued`` (will be retried) or ``failed`` (for good).
        """
        with self.db.session() as session:
            job = session.get(Job, job_id)
            if job is None or job.status is not JobStatus.RUNNING or job.worker != worker:
                return job.status if job is not None else JobStatus.FAILED
            job.error = reason[:4000]
            if retry and job.attempts < job.max_attempts:
                delay = self.settings.job_retry_seconds * 2 ** max(0, job.attempts - 1)
                job.status = JobStatus.QUEUED
                job.not_before = utcnow() + dt.timedelta(seconds=delay)
                job.worker = None
            else:
                job.status = JobStatus.FAILED
                job.finished_at = utcnow()
            status = job.status
        log.warning("job %d %s: %s", job_id, status.value, reason)
        return status

    # recovery ------------------------------------------------------------------------
    def reap(self, lease_seconds: float | None = None) -> list[int]:
        """Queue again the running jobs whose worker stopped sending heartbeats.

        Returns
        -------
        list[int]
            The ids re-queued (or failed, when their attempts are used up).
        """
        lease = lease_seconds if lease_seconds is not None else self.settings.job_lease_seconds
        cutoff = utcnow() - dt.timedelta(seconds=lease)
        recovered: list[int] = []
        with self.db.session() as session:
            stale = list(
                session.scalars(
                    select(Job).where(
                        Job.status == JobStatus.RUNNING,
                        or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff),
                    )
                )
            )
            for job in stale:
                result = session.execute(
                    update(Job)
                    .where(
                        and_(
                            Job.id == job.id,
                            Job.status == JobStatus.RUNNING,
                            Job.worker == job.worker,
                        )
                    )
                    .values(
                        status=JobStatus.QUEUED
                        if job.attempts < job.max_attempts
                        else JobStatus.FAILED,
                        worker=None,
                        error=f"worker {job.worker} stopped (no heartbeat for {lease:.0f} s)",
                        not_before=utcnow(),
                    )
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount:  # type: ignore[attr-defined]
                    recovered.append(job.id)
        if recovered:
            log.warning("re-queued %d job(s) left running by a stopped worker", len(recovered))
        return recovered

    def due(self, limit: int = 100) -> list[int]:
        """Ids of queued jobs that are due now (for dispatching to Celery)."""
        with self.db.session() as session:
            return list(
                session.scalars(
                    select(Job.id)
                    .where(Job.status == JobStatus.QUEUED, Job.not_before <= utcnow())
                    .order_by(Job.queued_at)
                    .limit(limit)
                )
            )
