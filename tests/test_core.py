"""Settings, events, PHI-free logging, file-meta encoding and tolerant reading."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.filereader import _read_file_meta_info, read_preamble

from radpilot.core.errors import ConfigurationError
from radpilot.core.events import EventBus
from radpilot.core.logging import ref
from radpilot.core.settings import load_settings
from radpilot.dicom.reading import InvalidInstanceError, extract_meta, parse_age_years, parse_bytes
from radpilot.dicom.writing import IMPLEMENTATION_CLASS_UID, part10
from tests.conftest import shared_data

uids = st.from_regex(r"[1-9][0-9]{0,5}(\.[1-9][0-9]{0,5}){1,8}", fullmatch=True).filter(
    lambda u: len(u) <= 64
)


def test_settings_from_env_config_file_and_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "radpilot.yaml"
    config.write_text("ae_title: FROMFILE\ndicom_port: 4242\nstudy_quiet_seconds: 5\n")
    monkeypatch.setenv("RADPILOT_CONFIG", str(config))
    monkeypatch.setenv("RADPILOT_DICOM_PORT", "5555")
    monkeypatch.setenv("RADPILOT_ALLOWED_CALLING_AETS", "CT1, MR2")
    s = load_settings(study_quiet_seconds=7)
    assert s.ae_title == "FROMFILE"  # from the file
    assert s.dicom_port == 5555  # env beats the file
    assert s.study_quiet_seconds == 7  # explicit beats env and file
    assert s.allowed_calling_aets == ["CT1", "MR2"]
    toml = tmp_path / "radpilot.toml"
    toml.write_text('ae_title = "TOMLAE"\n')
    monkeypatch.setenv("RADPILOT_CONFIG", str(toml))
    assert load_settings().ae_title == "TOMLAE"


@pytest.mark.parametrize(
    "bad",
    [
        {"ae_title": "A" * 17},
        {"dicom_port": 70000},
        {"allowed_hosts": ["not-an-ip"]},
        {"ae_title": "BAD\\AE"},
    ],
)
def test_invalid_settings_name_the_problem(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings(**bad)
    assert next(iter(bad)) in str(info.value)


def test_missing_config_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADPILOT_CONFIG", "/nonexistent/radpilot.yaml")
    with pytest.raises(ConfigurationError, match="RADPILOT_CONFIG"):
        load_settings()


def test_event_bus_isolates_failing_handlers(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    seen: list[str] = []

    def broken(**_: object) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe("study.complete", broken)
    bus.subscribe("study.complete", lambda study_instance_uid, **_: seen.append(study_instance_uid))
    with caplog.at_level(logging.ERROR):
        delivered = bus.publish("study.complete", study_instance_uid="1.2.3")
    assert delivered == 1 and seen == ["1.2.3"]
    assert "subscriber bug" in caplog.text


def test_ref_is_stable_short_and_not_the_value() -> None:
    assert ref("1.2.840.1") == ref("1.2.840.1") != ref("1.2.840.2")
    assert len(ref("1.2.840.1")) == 12 and "840" not in ref("1.2.840.1")
    assert ref(None) == "-"


@settings(max_examples=60, deadline=None)
@given(
    sop_class=uids,
    sop_instance=uids,
    syntax=uids,
    aet=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=16),
    body=st.binary(max_size=64),
)
def test_part10_meta_reads_back(
    sop_class: str, sop_instance: str, syntax: str, aet: str, body: bytes
) -> None:
    data = part10(body, sop_class, sop_instance, syntax, aet)
    fp = io.BytesIO(data)
    read_preamble(fp, force=False)
    meta = _read_file_meta_info(fp)
    meta_end = 132 + 12 + meta.FileMetaInformationGroupLength
    assert meta.MediaStorageSOPClassUID == sop_class
    assert meta.MediaStorageSOPInstanceUID == sop_instance
    assert meta.TransferSyntaxUID == syntax
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.SourceApplicationEntityTitle.strip() == aet
    assert data[meta_end:] == body  # the data set is untouched


def test_extract_meta_from_real_file() -> None:
    path = sorted(shared_data("dcm_qa_ts", "In").iterdir())[0]
    ds = pydicom.dcmread(path)
    meta = extract_meta(parse_bytes(path.read_bytes()))
    assert meta.sop_instance_uid == ds.SOPInstanceUID
    assert meta.values["Modality"] == ds.Modality
    assert meta.values["Manufacturer"] == ds.Manufacturer
    assert meta.values["Rows"] == ds.Rows


def test_missing_uid_and_garbage_are_rejected() -> None:
    path = sorted(shared_data("dcm_qa_ts", "In").iterdir())[0]
    ds = pydicom.dcmread(path)
    del ds.StudyInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer)
    with pytest.raises(InvalidInstanceError, match="StudyInstanceUID is missing"):
        extract_meta(parse_bytes(buffer.getvalue()))
    lying_length = b"\x08\x00\x16\x00UI\xf0\xff" + b"1.2"  # declares 65520 bytes, has 3
    with pytest.raises(InvalidInstanceError, match="truncated") as info:
        parse_bytes(part10(lying_length, "1.2", "1.2", "1.2.840.10008.1.2.1"))
    assert info.value.status == 0xC000


@pytest.mark.parametrize(
    ("age", "birth", "study", "years"),
    [
        ("045Y", None, None, 45.0),
        ("006M", None, None, 0.5),
        ("014D", None, None, 0.038),
        (None, "20000615", "20200614", 19.0),
        (None, "20000615", "20200615", 20.0),
        ("garbage", None, None, None),
        (None, "2000", "20200101", None),
    ],
)
def test_patient_age(
    age: str | None, birth: str | None, study: str | None, years: float | None
) -> None:
    assert parse_age_years(age, birth, study) == years


def test_freezing_the_start_up_heap_takes_it_out_of_collections() -> None:
    import gc

    from radpilot.core.heap import freeze_startup_heap

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    before = Cycle()
    try:
        frozen = freeze_startup_heap("in a test")
        assert frozen == gc.get_freeze_count() > 0
        assert not any(obj is before for obj in gc.get_objects())  # out of the generations
        after = Cycle()
        assert any(obj is after for obj in gc.get_objects())  # new objects are tracked
    finally:
        gc.unfreeze()
    assert any(obj is before for obj in gc.get_objects())
