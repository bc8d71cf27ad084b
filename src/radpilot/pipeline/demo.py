"""The demo loop that ``make demo`` runs, as functions the CLI and the browser tests share.

1. :func:`install_model` registers the committed reference model and makes it active (an
   admin's direct transition, audited as such);
2. :func:`write_rules` routes frontal chest radiographs (CR/DX) to it;
3. :func:`make_studies` wraps real PneumoniaMNIST radiographs as DICOM studies;
4. the caller sends them by C-STORE into the running receiver (the real network path);
5. :func:`wait_for_results` returns once every study has its AI result (or failed);
6. :func:`demo_users` creates (or resets) the demo's radiologist and administrator with
   fresh random passwords, which the CLI prints.

:func:`replay` does 1-5 in one call for the monitoring tests and benchmarks: streams of
studies sent part by part through a freshly started radpilot.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from radpilot.core.errors import RadpilotError
from radpilot.core.settings import Settings
from radpilot.data.synth_common import Variation
from radpilot.store import Database
from radpilot.store.models import Study
from radpilot.store.models_pipeline import Job, JobStatus, ModelVersion, Result
from radpilot.store.models_users import Role, User

__all__ = [
    "DEMO_RULES",
    "DemoProgress",
    "DemoUser",
    "Replay",
    "demo_users",
    "install_model",
    "make_studies",
    "replay",
    "wait_for_results",
    "write_rules",
]

DEMO_RULES = """\
# Written by `radpilot demo`: frontal chest radiographs go to the reference model.
rules:
  - name: chest-radiograph-pneumonia
    match:
      Modality: "CR|DX"
      BodyPartExamined: "CHEST"
    models: [{model}]
    series: largest
"""


@dataclass(frozen=True)
class DemoUser:
    """A demo account and its password (shown once, on the terminal)."""

    username: str
    role: Role
    password: str


@dataclass(frozen=True)
class DemoProgress:
    """Where the demo studies stand."""

    studies: int
    complete: int
    results: int
    positives: int
    failed: int
    unfinished_jobs: int

    @property
    def done(self) -> bool:
        """Every study complete, no job left to run, and a result or a failure for each."""
        return (
            self.complete == self.studies
            and self.unfinished_jobs == 0
            and self.results + self.failed >= self.studies
        )


def install_model(db: Database, settings: Settings, package: Path) -> ModelVersion:
    """Register ``package`` (again a no-op when it is registered) and make it active.

    Raises
    ------
    radpilot.core.errors.ModelError
        If the package is unusable.
    """
    from radpilot.models.registry import Registry

    registry = Registry(db, settings.models_dir)
    version = registry.add(package, added_by="demo")
    return registry.set_state(
        version.name,
        version.version,
        "active",
        actor="demo-admin",
        reason="radpilot demo: the reference model",
        approval="none (embedded default: an administrator's direct action)",
    )


def write_rules(settings: Settings, model: str) -> Path:
    """The demo's routing rules, unless the installation has its own file."""
    path = settings.routing_rules_path
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DEMO_RULES.format(model=model), encoding="utf-8")
    return path


def make_studies(
    npz: Path,
    folder: Path,
    count: int,
    positive_rate: float,
    seed: str = "radpilot-demo",
    *,
    variation: Variation | None = None,
    size: int = 512,
    split: str = "test",
    draw: str | None = None,
) -> list[tuple[Path, str]]:
    """``count`` one-image chest radiograph studies from a PneumoniaMNIST split (``test``
    by default), with varied patients, sites and devices, ``positive_rate`` of them
    pneumonia cases; each file with its Study Instance UID. ``variation`` (default: varied
    headers) can add a header drift or perturbations, as `radpilot synth --drift/--perturb`
    do. ``draw`` (a seed) draws the cases at random instead of taking the first ones.

    Raises
    ------
    ValueError
        If the split cannot give that mix.
    FileNotFoundError
        If ``npz`` is missing.
    """
    from radpilot.data.synth import RadiographOptions, choose_cases, radiograph_study
    from radpilot.data.synth_output import write_study

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for case in choose_cases(npz, split, count, positive_rate, draw):
        study = radiograph_study(
            case,
            options=RadiographOptions(size=size),
            variation=variation or Variation(True),
            seed=seed,
        )
        relative, _ = write_study(study, folder, case.source.replace("/", "-"))
        files.append((folder / relative, str(study.datasets[0].StudyInstanceUID)))
    return files


def progress(db: Database, study_uids: list[str]) -> DemoProgress:
    """How far the pipeline got with these studies."""
    with db.session() as session:
        ids = list(
            session.scalars(select(Study.id).where(Study.study_instance_uid.in_(study_uids)))
        )
        complete = session.scalar(
            select(func.count(Study.id)).where(Study.id.in_(ids), Study.completed_at.is_not(None))
        )
        jobs = dict(
            session.execute(
                select(Job.status, func.count(Job.id))
                .where(Job.study_pk.in_(ids))
                .group_by(Job.status)
            ).all()
        )
        results, positives = session.execute(
            select(func.count(Result.id), func.count(Result.id).filter(Result.positive)).where(
                Result.study_pk.in_(ids), Result.visible
            )
        ).one()
    unfinished = sum(
        n for status, n in jobs.items() if status not in (JobStatus.DONE, JobStatus.FAILED)
    )
    return DemoProgress(
        studies=len(study_uids),
        complete=int(complete or 0),
        results=int(results),
        positives=int(positives),
        failed=int(jobs.get(JobStatus.FAILED, 0)),
        unfinished_jobs=unfinished,
    )


def wait_for_results(
    db: Database, study_uids: list[str], timeout: float = 300.0, poll: float = 0.5
) -> DemoProgress:
    """Wait until :attr:`DemoProgress.done`.

    Raises
    ------
    RadpilotError
        If that takes longer than ``timeout`` seconds (the message says how far it got).
    """
    deadline = time.monotonic() + timeout
    while True:
        now = progress(db, study_uids)
        if now.done:
            return now
        if time.monotonic() > deadline:
            raise RadpilotError(
                f"the demo studies were not all processed within {timeout:.0f} s: "
                f"{now.complete}/{now.studies} complete, {now.results} results, "
                f"{now.unfinished_jobs} jobs still queued or running"
            )
        time.sleep(poll)


def demo_users(db: Database) -> list[DemoUser]:
    """The demo's radiologist ``demo`` and administrator ``demo-admin``, created or given
    a new random password (each run prints the current ones)."""
    from radpilot.web import accounts

    made = []
    for username, role in (("demo", Role.RADIOLOGIST), ("demo-admin", Role.ADMIN)):
        password = secrets.token_urlsafe(12)
        with db.session() as session:
            exists = session.scalar(select(func.count(User.id)).where(User.username == username))
        if exists:
            accounts.set_password(db, username, password, actor="demo")
            accounts.set_disabled(db, username, False, actor="demo")
        else:
            accounts.add_user(db, username, password, role, display_name=f"Demo {role.value}",
                              actor="demo")  # fmt: skip
        made.append(DemoUser(username, role, password))
    return made


@dataclass(frozen=True)
class Replay:
    """What :func:`replay` left: the settings of the stopped radpilot, its database and
    the active model version."""

    settings: Settings
    db: Database
    version: ModelVersion


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def replay(
    root: Path,
    parts: Sequence[Sequence[tuple[Path, str]]],
    package: Path,
    *,
    explain: bool = False,
    timeout: float = 300.0,
) -> Replay:
    """Start radpilot under ``root/data`` with ``package`` active, C-STORE each part of
    studies in order (every result of a part before the next part is sent), and stop.

    Raises
    ------
    RadpilotError
        If a file is not accepted, or the results do not arrive within ``timeout``.
    """
    from radpilot.dicom.scu import send_files
    from radpilot.pipeline.service import Service

    settings = Settings(
        data_dir=root / "data", dicom_port=_free_port(), http_port=0, study_quiet_seconds=1.0,
        explain=explain, fsync=False, min_free_disk_mb=0,
    )  # fmt: skip
    service = Service(settings, web=False)
    service.db.migrate()
    version = install_model(service.db, settings, package)
    write_rules(settings, version.name)
    service.start()
    try:
        for part in parts:
            report = send_files([p for p, _ in part], "127.0.0.1", service.receiver.port,
                                called_ae_title=settings.ae_title)  # fmt: skip
            if report.succeeded != len(part):
                raise RadpilotError(
                    f"{report.succeeded} of {len(part)} studies accepted "
                    f"(statuses {dict(report.statuses)}, unsent {dict(report.unsent)})"
                )
            wait_for_results(service.db, [uid for _, uid in part], timeout=timeout)
    finally:
        service.stop()
    return Replay(settings, service.db, version)
