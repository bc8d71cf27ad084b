"""The intake indexes in the lulls between arrivals, and never later than its bound."""

from __future__ import annotations

import io
import time
import tracemalloc
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from radpilot.core.events import STUDY_INDEXED
from radpilot.core.settings import load_settings
from radpilot.dicom.intake import Arrival, Intake
from radpilot.pipeline.service import build_intake
from radpilot.store import Archive, Database
from radpilot.store.models import Instance, Study, as_utc, utcnow

CT_SMALL = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"


def _instances(n: int) -> list[bytes]:
    """``n`` distinct instances of one study, made from pydicom's CT test file."""
    template = pydicom.dcmread(CT_SMALL)
    study = generate_uid()
    out = []
    for _ in range(n):
        template.StudyInstanceUID = study
        template.SOPInstanceUID = generate_uid()
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        buffer = io.BytesIO()
        template.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


def _indexed(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count(Instance.id))) or 0)


@pytest.fixture
def intake(tmp_path: Path, db: Database) -> Intake:
    return Intake(db, Archive(tmp_path / "archive", fsync=False))


def _stream(intake: Intake, data: list[bytes], gap: float) -> list[int]:
    """Accept ``data`` one by one, ``gap`` seconds apart; the indexed count after each."""
    counts = []
    for item in data:
        assert intake.accept(Arrival(item, "import")).status == 0
        counts.append(_indexed(intake.db))
        time.sleep(gap)
    return counts


def test_a_stream_is_indexed_after_it_stops_not_between_its_objects(intake: Intake) -> None:
    intake.LULL = 1.0  # far longer than the gaps below, even on a busy machine
    intake.MAX_DELAY = 60.0
    events: list[str] = []
    intake.bus.subscribe(STUDY_INDEXED, lambda **kw: events.append(kw["sop_instance_uid"]))
    intake.start()
    try:
        during = _stream(intake, _instances(20), gap=0.02)
        stopped = time.monotonic()
        assert intake.flush(timeout=30)
        waited = time.monotonic() - stopped
    finally:
        intake.stop()
    assert during == [0] * 20  # nothing indexed while objects kept arriving
    assert _indexed(intake.db) == 20 and len(events) == 20
    assert waited >= 0.9  # it waited for the lull, and then did all of them


def test_an_endless_stream_is_indexed_no_later_than_max_delay(intake: Intake) -> None:
    intake.LULL = 60.0  # never reached during this stream
    intake.MAX_DELAY = 0.3
    intake.start()
    try:
        started = time.monotonic()
        during = _stream(intake, _instances(30), gap=0.05)
        elapsed = time.monotonic() - started
        assert intake.flush(timeout=30)
    finally:
        intake.stop()
    assert elapsed > 1.0
    assert during[-1] > 0  # indexed while the stream went on
    assert _indexed(intake.db) == 30


def test_a_single_arrival_is_indexed_within_the_lull(intake: Intake) -> None:
    intake.LULL = 0.05
    intake.MAX_DELAY = 60.0
    intake.start()
    try:
        started = time.monotonic()
        _stream(intake, _instances(1), gap=0)
        assert intake.flush(timeout=30)
        took = time.monotonic() - started
    finally:
        intake.stop()
    assert _indexed(intake.db) == 1
    assert took < 5.0  # the lull, not MAX_DELAY


def test_stop_indexes_what_is_queued_without_waiting_for_a_lull(intake: Intake) -> None:
    intake.LULL = 60.0
    intake.MAX_DELAY = 60.0
    intake.start()
    _stream(intake, _instances(5), gap=0)
    started = time.monotonic()
    intake.stop()
    assert time.monotonic() - started < 30.0
    assert _indexed(intake.db) == 5


def test_objects_waiting_for_indexing_do_not_keep_their_pixel_data(intake: Intake) -> None:
    template = pydicom.dcmread(CT_SMALL)
    template.Rows = template.Columns = 1024  # 2 MiB of pixel data, parsed deferred
    template.PixelData = bytes(1024 * 1024 * 2)
    images = []
    for _ in range(30):
        template.SOPInstanceUID = generate_uid()
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        buffer = io.BytesIO()
        template.save_as(buffer, enforce_file_format=True)
        images.append(buffer.getvalue())
    intake.LULL = intake.MAX_DELAY = 60.0  # all 30 wait in the queue
    intake.start()
    try:
        tracemalloc.start()
        for data in images:
            received = bytes(bytearray(data))  # a new buffer, as each C-STORE brings
            assert intake.accept(Arrival(received, "import")).status == 0
            del received
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert _indexed(intake.db) == 0
    finally:
        intake.stop()
    assert _indexed(intake.db) == 30
    assert held < 8 * 2**20  # the 30 images are 60 MiB


def test_the_index_records_when_objects_arrived_not_when_they_were_indexed(
    intake: Intake,
) -> None:
    intake.LULL = 1.0
    intake.MAX_DELAY = 60.0
    intake.start()
    try:
        data = _instances(3)
        arrived = []
        for item in data:
            arrived.append(utcnow())
            assert intake.accept(Arrival(item, "import")).status == 0
            time.sleep(0.05)
        assert intake.flush(timeout=30)
        indexed = utcnow()
    finally:
        intake.stop()
    with intake.db.session() as session:
        study = session.scalars(select(Study)).one()
        received = sorted(as_utc(t) for t in session.scalars(select(Instance.received_at)))
    assert (indexed - arrived[-1]).total_seconds() > 0.9  # indexed after the lull
    assert abs((as_utc(study.first_received_at) - arrived[0]).total_seconds()) < 0.2
    assert abs((as_utc(study.last_received_at) - arrived[-1]).total_seconds()) < 0.2
    for got, sent in zip(received, arrived, strict=True):
        assert abs((got - sent).total_seconds()) < 0.2


@pytest.mark.parametrize(("quiet", "expected"), [(30.0, 5.0), (0.5, 0.125)])
def test_indexing_lags_by_at_most_a_quarter_of_the_quiet_window(
    tmp_path: Path, db: Database, quiet: float, expected: float
) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data", fsync=False, min_free_disk_mb=0, study_quiet_seconds=quiet
    )
    intake = build_intake(settings, db)
    assert expected == intake.MAX_DELAY
