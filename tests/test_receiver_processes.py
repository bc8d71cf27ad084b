"""Several receiver processes on one DICOM port (RADPILOT_RECEIVER_PROCESSES)."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from radpilot.core.events import STUDY_COMPLETE
from radpilot.core.settings import load_settings
from radpilot.pipeline.service import IntakeService
from radpilot.store.models import Instance, Study
from tests import dcmtk
from tests.pipeline_helpers import radiographs, write_studies

pytestmark = [pytest.mark.dcmtk, pytest.mark.slow]


def test_two_processes_share_the_port_and_every_arrival_reaches_the_main_bus(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data", dicom_port=0, dicom_host="127.0.0.1", fsync=False,
        min_free_disk_mb=0, study_quiet_seconds=0.5, receiver_processes=2,
    )  # fmt: skip
    service = IntakeService(settings)
    completed: set[str] = set()
    lock = threading.Lock()

    def on_complete(study_instance_uid: str, **_: object) -> None:
        with lock:
            completed.add(study_instance_uid)

    service.bus.subscribe(STUDY_COMPLETE, on_complete)
    service.start()
    try:
        assert service.receivers is not None and len(service.receivers.pids) == 1
        datasets = radiographs(24, size=64)
        files = write_studies(tmp_path / "in", datasets)
        port = service.receiver.port
        # 12 associations at once, two studies each: Linux spreads the connections over
        # both listening sockets (all 12 in one process: probability 2**-11).
        with ThreadPoolExecutor(max_workers=12) as pool:
            runs = list(pool.map(lambda k: dcmtk.storescu(port, files[2 * k : 2 * k + 2]),
                                 range(12)))  # fmt: skip
        assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
        uids = {str(d.StudyInstanceUID) for d in datasets}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and completed != uids:
            time.sleep(0.1)
        assert completed == uids  # the watcher in the main process saw every study
        with service.db.session() as session:
            assert session.scalar(select(func.count(Instance.id))) == 24
            assert session.scalar(select(func.count(Study.id))) == 24
        child = service.receivers.pids[0]
        taken_by_child = service.receivers.indexed_by[child]
        assert 0 < taken_by_child < 24  # both processes received
        # A child that dies is reported, and the main process still receives.
        os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "exited with code -9" not in caplog.text:
            time.sleep(0.1)
        assert "receiver process radpilot-receiver-2 exited with code -9" in caplog.text
        late = write_studies(tmp_path / "late", radiographs(1, size=64, start=50))
        assert dcmtk.storescu(port, late).returncode == 0
    finally:
        service.stop()
    assert service.receivers is None  # stopped with the service
