"""Study-complete detection: quiet time, persistence across restarts, re-announcement."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import select

from radpilot.core.events import STUDY_COMPLETE, EventBus
from radpilot.dicom.intake import Arrival, Intake
from radpilot.pipeline.completion import StudyCompletionWatcher
from radpilot.store import Archive, Database
from radpilot.store.models import Study
from tests.conftest import shared_data


def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_unannounced_studies_are_rearmed_after_restart(db: Database, tmp_path: Path) -> None:
    files = sorted(shared_data("dcm_qa_ts", "In").iterdir())
    bus = EventBus()
    intake = Intake(db, Archive(tmp_path / "a", fsync=False), bus)
    intake.start()
    for path in files:
        intake.accept(Arrival(path.read_bytes(), "import"))
    intake.stop()  # the process "stops" before any study was quiet long enough
    with db.session() as session:
        uids = set(session.scalars(select(Study.study_instance_uid)))
        assert all(s.completed_at is None for s in session.scalars(select(Study)))
    assert uids

    announced: list[str] = []
    restarted = EventBus()
    restarted.subscribe(
        STUDY_COMPLETE, lambda study_instance_uid, instances: announced.append(study_instance_uid)
    )
    watcher = StudyCompletionWatcher(db, restarted, quiet_seconds=0.3)
    watcher.start()
    try:
        assert wait_for(lambda: set(announced) == uids)
    finally:
        watcher.stop()
    assert len(announced) == len(uids)  # each once
    with db.session() as session:
        assert all(s.completed_at is not None for s in session.scalars(select(Study)))

    # a quiet, announced study is not announced again at the next start...
    again: list[str] = []
    bus3 = EventBus()
    bus3.subscribe(
        STUDY_COMPLETE, lambda study_instance_uid, instances: again.append(study_instance_uid)
    )
    watcher = StudyCompletionWatcher(db, bus3, quiet_seconds=0.2)
    watcher.start()
    time.sleep(0.8)
    assert again == []
    # ...but a new instance for it makes it due again
    bus3.publish("instance.indexed", study_instance_uid=next(iter(uids)), sop_instance_uid="x")
    assert wait_for(lambda: again == [next(iter(uids))])
    watcher.stop()
