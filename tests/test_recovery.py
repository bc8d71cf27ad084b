"""A worker killed mid-job: the job runs again after restart, its outputs exist once.

Both worker modes: the embedded pool inside ``radpilot serve``, and Celery workers
(``radpilot worker``) with Redis and with RabbitMQ as the broker, on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from sqlalchemy import select
from torch import nn

from radpilot.models.registry import Registry
from radpilot.store import Database
from radpilot.store.models_pipeline import Job, JobStatus, Result, ResultObject
from tests.conftest import free_port, missing
from tests.dcmtk import storescu
from tests.model_factory import manifest_dict, package
from tests.pipeline_helpers import radiographs, write_studies

pytestmark = [pytest.mark.dcmtk, pytest.mark.slow]

RULES = "rules:\n  - name: cxr\n    match: {Modality: DX}\n    models: [busy]\n"
RADPILOT = [str(Path(sys.executable).parent / "radpilot")]


class BusyNet(nn.Module):
    """Computes for a while (a loop TorchScript keeps), then returns one logit."""

    def __init__(self, iterations: int) -> None:
        super().__init__()
        self.iterations = iterations
        self.register_buffer("weight", torch.eye(64) * 0.5 + 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.flatten(1)[:, :64]
        for _ in range(self.iterations):
            y = torch.tanh(y @ self.weight)
        return y[:, :1]


def busy_package(folder: Path, seconds: float) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in 2.13
        probe = torch.jit.script(BusyNet(2000))
    x = torch.rand(1, 1, 32, 32)
    start = time.perf_counter()
    probe(x)
    per_iteration = (time.perf_counter() - start) / 2000
    manifest = manifest_dict("busy", "classification", "torchscript", "model.pt", ["x"], [32, 32])
    return package(folder, BusyNet(int(seconds / per_iteration)), manifest, script=True)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def job(db: Database) -> Job | None:
    with db.session() as session:
        return session.scalars(select(Job)).first()


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [*RADPILOT, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kill(process)


def broker_reachable(url: str) -> None:
    host_port = url.split("@")[-1].split("://")[-1].split("/")[0]
    host, _, port = host_port.partition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        missing(f"the broker at {host_port} is not running")


@pytest.fixture
def installation(tmp_path: Path) -> Iterator[tuple[dict[str, str], Database, list[Path]]]:
    data = tmp_path / "rp"
    rules = tmp_path / "routing.yaml"
    rules.write_text(RULES)
    env = {
        **os.environ,
        "RADPILOT_DATA_DIR": str(data),
        "RADPILOT_DICOM_PORT": str(free_port()),
        "RADPILOT_DICOM_HOST": "127.0.0.1",
        "RADPILOT_STUDY_QUIET_SECONDS": "0.5",
        "RADPILOT_JOB_LEASE_SECONDS": "2",
        "RADPILOT_JOB_SWEEP_SECONDS": "1",
        "RADPILOT_ROUTING_RULES": str(rules),
        "RADPILOT_FSYNC": "false",
        "RADPILOT_MIN_FREE_DISK_MB": "0",
    }
    db = Database(f"sqlite:///{data / 'radpilot.db'}")
    db.migrate()
    registry = Registry(db, data / "models")
    registry.add(busy_package(tmp_path / "busy", seconds=4.0), added_by="test")
    registry.set_state("busy", "1.0.0", "active", actor="test")
    files = write_studies(tmp_path / "study", radiographs(1, size=64))
    yield env, db, files
    db.dispose()


def check_ran_twice_with_one_output(db: Database, data: Path) -> None:
    current = job(db)
    assert current is not None and current.status is JobStatus.DONE
    assert current.attempts == 2
    with db.session() as session:
        results = list(session.scalars(select(Result)))
        objects = list(session.scalars(select(ResultObject)))
    assert len(results) == 1
    keys = [(o.kind, o.name) for o in objects]
    assert len(keys) == len(set(keys)) and ("sr", "sr") in keys
    on_disk = sorted(p for p in (data / "results").rglob("*") if p.is_file())
    assert sorted(data / o.path for o in objects) == on_disk  # no second copy, no leftovers


def test_embedded_worker_killed_mid_job_reruns_once(
    installation: tuple[dict[str, str], Database, list[Path]], tmp_path: Path
) -> None:
    env, db, files = installation
    log = tmp_path / "serve.log"
    server = start(["serve", "--no-web"], env, log)
    try:
        port = int(env["RADPILOT_DICOM_PORT"])
        wait_for(lambda: storescu(port, files).returncode == 0, 60, "radpilot to accept the study")
        wait_for(
            lambda: (j := job(db)) is not None and j.status is JobStatus.RUNNING, 60, "job start"
        )
        kill(server)
        stale = job(db)
        assert stale is not None and stale.status is JobStatus.RUNNING  # left behind
        server = start(["serve", "--no-web"], env, log)
        wait_for(lambda: (j := job(db)) is not None and j.status is JobStatus.DONE, 200, "re-run")
    finally:
        stop(server)
    check_ran_twice_with_one_output(db, Path(env["RADPILOT_DATA_DIR"]))


@pytest.mark.parametrize(
    "broker", ["redis://127.0.0.1:6379/15", "amqp://guest:guest@127.0.0.1:5672//"]
)
def test_celery_worker_killed_mid_job_reruns_once(
    installation: tuple[dict[str, str], Database, list[Path]], tmp_path: Path, broker: str
) -> None:
    broker_reachable(broker)
    env, db, files = installation
    env = {**env, "RADPILOT_WORKER_MODE": "celery", "RADPILOT_BROKER_URL": broker}
    _purge(broker)
    server = start(["serve", "--no-web"], env, tmp_path / "serve.log")
    worker = start(["worker"], env, tmp_path / "worker.log")
    try:
        port = int(env["RADPILOT_DICOM_PORT"])
        wait_for(lambda: storescu(port, files).returncode == 0, 60, "radpilot to accept the study")
        wait_for(
            lambda: (j := job(db)) is not None and j.status is JobStatus.RUNNING, 90, "job start"
        )
        kill(worker)
        worker = start(["worker"], env, tmp_path / "worker.log")
        wait_for(lambda: (j := job(db)) is not None and j.status is JobStatus.DONE, 200, "re-run")
    finally:
        stop(worker)
        stop(server)
    check_ran_twice_with_one_output(db, Path(env["RADPILOT_DATA_DIR"]))


def _purge(broker: str) -> None:
    """Empty the jobs queue left by an earlier run on this broker."""
    from celery import Celery

    app = Celery("purge", broker=broker)
    # A queue that does not exist yet has nothing to purge.
    with contextlib.suppress(Exception), app.connection_for_write() as connection:
        connection.default_channel.queue_purge("radpilot.jobs")
