"""De-identification on arrival (``RADPILOT_DEID_ON_INTAKE``): the archive holds only the
de-identified object, pixel data unchanged; suspected burned-in text goes to quarantine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from sqlalchemy import select

from radpilot.core.settings import load_settings
from radpilot.dicom.intake import Arrival, Intake, IntakeResult
from radpilot.dicom.reading import parse_bytes
from radpilot.pipeline.service import build_intake
from radpilot.store import Database
from radpilot.store.models import Instance, ReceiptOutcome

KEY = "intake-deid-test-key-0123456789abcdef"


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[Intake]:
    settings = load_settings(
        data_dir=tmp_path / "data",
        deid_on_intake=True,
        deid_key=KEY,
        fsync=False,
        min_free_disk_mb=0,
    )
    db = Database(settings.effective_database_url)
    db.migrate()
    intake = build_intake(settings, db)
    intake.start()
    yield intake
    intake.stop()
    db.dispose()


def _arrive(intake: Intake, name: str) -> tuple[bytes, IntakeResult]:
    data = Path(str(get_testdata_file(name))).read_bytes()
    return data, intake.accept(Arrival(data=data, source="import", origin=name))


def test_large_pixel_data_arrives_de_identified_and_unchanged(intake: Intake) -> None:
    data, result = _arrive(intake, "emri_small.dcm")  # MR, 80 KiB of pixel data
    raw = parse_bytes(data).get_item(0x7FE00010, keep_deferred=True)
    assert isinstance(raw, RawDataElement) and raw.value is None  # deferred at parse
    assert result.outcome is ReceiptOutcome.STORED
    assert intake.flush(30)
    original = pydicom.dcmread(get_testdata_file("emri_small.dcm"))
    with intake.db.session() as session:
        (row,) = session.scalars(select(Instance)).all()
        stored = pydicom.dcmread(intake.archive.root / row.file_path)
    assert stored.PixelData == original.PixelData
    assert stored.PatientIdentityRemoved == "YES"
    assert stored.SOPInstanceUID != original.SOPInstanceUID  # keyed pseudonym
    assert str(stored.PatientName) != str(original.PatientName)
    assert not intake.archive.contains(str(original.SOPInstanceUID))  # never the original


def test_secondary_capture_is_quarantined_not_archived(intake: Intake) -> None:
    _, result = _arrive(intake, "SC_rgb_16bit_2frame.dcm")
    assert result.outcome is ReceiptOutcome.QUARANTINED
    assert intake.flush(30)
    with intake.db.session() as session:
        assert session.scalars(select(Instance)).all() == []
    quarantine = intake.quarantine_dir
    assert quarantine is not None
    assert len(list(quarantine.rglob("*.dcm"))) == 1
