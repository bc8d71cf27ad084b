"""``radpilot deid`` over every pydicom-data file, checked against PS3.15 Table E.1-1.

The expected action of each attribute is derived here from the bundled table's JSON and
the rules written in docs/deid.md, independently of the engine's own resolution code, and
every attribute of the table found in an input (at any depth of nesting) is checked in the
output. Two runs in two processes with the same key must produce byte-identical files; a
run with another key must share no pseudonym with them.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID
from sqlalchemy import select
from typer.testing import CliRunner, Result

from radpilot.cli import main as cli_main
from radpilot.core.settings import DeidOptions
from radpilot.dicom.deid import RECORD_NAME, Pseudonymizer
from radpilot.store import Database
from radpilot.store.models import DeidRun
from tests.conftest import missing

KEY = "test-key-0123456789-abcdefghijklmnop"
OTHER_KEY = "another-key-9876543210-zyxwvutsrqpo"
TABLE = Path(__file__).resolve().parents[1] / "src/radpilot/dicom/deid/annex_e.json"
UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
# Option flag -> Table E.1-1 column, as docs/deid.md states.
COLUMNS = {
    "retain_dates": "retain_longitudinal_modified_dates",
    "retain_patient_characteristics": "retain_patient_characteristics",
    "retain_device_identity": "retain_device_identity",
    "clean_descriptors": "clean_descriptors",
}
# docs/deid.md: "Z allows a dummy": these carry pseudonyms instead of nothing.
PSEUDONYMISED_Z = {0x00100010, 0x00200010, 0x00080050}
DUMMY_CONSTANTS = {"0", "19000101", "000000", "19000101000000", "000Y"}
IDENTIFYING = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "PatientBirthDate",
    "AccessionNumber",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "InstitutionName",
)


def pydicom_data_dir() -> Path:
    """The folder of pydicom-data's 68 files, found without pydicom's download logic."""
    spec = importlib.util.find_spec("data_store")
    if spec is None or not spec.submodule_search_locations:
        missing("pip install pydicom-data (real DICOM files from many vendors) is needed")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    if len(list(folder.glob("*.dcm"))) < 60:
        missing(f"pydicom-data is incomplete at {folder}")
    return folder


def app() -> Any:
    """``radpilot``'s real Typer app with its commands registered (once per process)."""
    if not any(command.name == "deid" for command in cli_main.app.registered_commands):
        cli_main._register()
    return cli_main.app


def run_deid(data_dir: Path, *args: str, key: str | None = KEY) -> Result:
    env = {"RADPILOT_DEID_KEY": key, "RADPILOT_DATABASE_URL": None, "RADPILOT_CONFIG": None}
    return CliRunner(env=env).invoke(
        app(), ["--data-dir", str(data_dir), "deid", *args, "--no-progress"]
    )


# --- the expected action, from the table's JSON --------------------------------------
def expected_actions(options: DeidOptions) -> tuple[dict[int, str], str]:
    data = json.loads(TABLE.read_text(encoding="utf-8"))
    codes: dict[int, str] = {}
    curve = "X"
    for key, _name, basic, columns in data["rules"]:
        enabled = {
            columns[c] for flag, c in COLUMNS.items() if getattr(options, flag) and c in columns
        }
        code = ("C" if "C" in enabled else enabled.pop()) if enabled else basic
        if key == "PRIVATE" or key.startswith("60"):
            continue
        if key.startswith("50"):
            curve = code
            continue
        codes[int(key, 16)] = code
    return codes, curve


def text_of(value: Any) -> str:
    if isinstance(value, MultiValue | list):
        return "\\".join(str(v) for v in value)
    return "" if value is None else str(value)


@dataclass
class Found:
    path: tuple[tuple[int, int], ...]
    tag: int
    vr: str
    value: Any


def walk(ds: Dataset, path: tuple[tuple[int, int], ...] = ()) -> Iterator[Found]:
    for elem in ds:
        yield Found(path, int(elem.tag), elem.VR, elem.value)
        if elem.VR == "SQ":
            for index, item in enumerate(elem.value):
                yield from walk(item, (*path, (int(elem.tag), index)))


def lookup(ds: Dataset, found: Found) -> tuple[bool, Any]:
    """(present, value) of the element at the same place in ``ds``."""
    here = ds
    for tag, index in found.path:
        if tag not in here or here[tag].VR != "SQ" or len(here[tag].value) <= index:
            return False, None
        here = here[tag].value[index]
    if found.tag not in here:
        return False, None
    return True, here[found.tag].value


def words_of(ds: Dataset) -> set[str]:
    words: set[str] = set()
    for keyword in IDENTIFYING:
        text = text_of(ds.get(keyword))
        words.update(w for w in re.split(r"[\^=\\\s,]+", text) if len(w) >= 2)
    return words


def contains_word(text: str, words: set[str]) -> bool:
    return any(
        re.search(rf"(?<![0-9A-Za-z]){re.escape(w)}(?![0-9A-Za-z])", text, re.I) for w in words
    )


def check_against_table(original: Dataset, output: Dataset, options: DeidOptions) -> int:
    """Assert every Table E.1-1 attribute of ``original`` was handled; return how many."""
    codes, curve = expected_actions(options)
    words = words_of(original)
    checked = 0
    for found in walk(original):
        group = found.tag >> 16
        code = codes.get(found.tag)
        if code is None and group & 0xFF00 == 0x5000 and group % 2 == 0:
            code = curve
        if code is None:
            continue
        if any(codes.get(t, "K") not in ("K", "C", "X/Z/U*") for t, _ in found.path):
            continue  # inside a sequence that was itself removed, emptied or replaced
        present, new = lookup(output, found)
        where = f"({group:04X},{found.tag & 0xFFFF:04X}) {code} at depth {len(found.path)}"
        if found.vr == "SQ":
            if code == "X":
                assert not present, where
            elif code == "Z":
                assert not present or len(new) == 0, where
            elif code == "D":
                assert present and len(new) >= 1 and all(len(i) == 0 for i in new), where
            checked += 1
            continue
        old = text_of(found.value).strip()
        if not old:
            continue
        new_text = text_of(new).strip() if present else ""
        checked += 1
        if code == "X":
            assert not present, where
        elif code == "K":
            assert present and new_text == old, where
        elif code == "U":
            if UID(old).type:  # a registry UID (e.g. a SOP class in a U attribute)
                assert new_text == old, where
            else:
                assert present and new_text != old, where
                assert all(UID_PATTERN.match(u) and len(u) <= 64 for u in new_text.split("\\"))
        elif code == "C":
            if found.vr in ("DA", "DT"):
                assert not new_text or (new_text != old and new_text[:4].isdigit()), where
            elif found.vr == "TM":
                assert new_text == old, where
            elif found.vr == "AE":
                assert new_text != old, where
            elif found.vr in ("LO", "SH", "LT", "ST", "UT", "UC", "PN"):
                assert not contains_word(new_text, words), where
                if not contains_word(old, words):
                    assert new_text == old, where  # nothing identifying: meaning kept
        elif code == "D" and old in DUMMY_CONSTANTS:
            assert present, where
        elif code == "D":
            assert present and new_text and new_text != old, where
        elif code == "Z" and found.tag not in PSEUDONYMISED_Z:
            assert not new_text, where
        else:  # Z (pseudonymised), X/Z, X/D, Z/D, X/Z/D: gone, empty or replaced
            assert not new_text or new_text != old or old in DUMMY_CONSTANTS, where
    return checked


def assert_clean_structure(output: Dataset) -> None:
    for found in walk(output):
        group = found.tag >> 16
        assert group % 2 == 0, f"private ({group:04X},{found.tag & 0xFFFF:04X}) kept"
        assert found.tag & 0xFFFF != 0 or group == 0x0002, "stale group length"
        assert group & 0xFF00 != 0x5000, "curve data kept"
        assert found.tag & 0xFF00FFFF != 0x60003000, "overlay data kept"
    assert output.PatientIdentityRemoved == "YES"
    values = {item.CodeValue for item in output.DeidentificationMethodCodeSequence}
    assert "113100" in values
    assert {item.CodingSchemeDesignator for item in output.DeidentificationMethodCodeSequence} == {
        "DCM"
    }


def no_leak(original: Dataset, output: Dataset) -> None:
    """No identifying string of the input occurs anywhere in the output header bytes."""
    header = Dataset(output)
    if "PixelData" in header:
        del header.PixelData
    buffer = BytesIO()
    header.save_as(buffer, implicit_vr=False, little_endian=True)
    data = buffer.getvalue()
    for keyword in (
        "PatientID",
        "PatientName",
        "AccessionNumber",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "PatientBirthDate",
    ):
        value = text_of(original.get(keyword)).strip()
        if len(value) >= 6:
            assert value.encode() not in data, f"{keyword} value found in the output"


# --- the runs ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One CLI run in-process, one in a subprocess (same key), one with another key."""
    from radpilot.dicom.reading import configure_pydicom

    configure_pydicom()
    src = pydicom_data_dir()
    base = tmp_path_factory.mktemp("deid")
    first = run_deid(base / "data", str(src), str(base / "out1"), "--format", "json")
    assert first.exit_code == 0, first.output + first.stderr
    command = [
        sys.executable,
        "-c",
        "from radpilot.cli.main import main; main()",
        "--data-dir",
        str(base / "data2"),
        "deid",
        str(src),
        str(base / "out2"),
        "--format",
        "json",
        "--quarantine",
        str(base / "q2"),
    ]
    env = {"PATH": "/usr/bin:/bin", "RADPILOT_DEID_KEY": KEY, "HOME": str(base)}
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    third = run_deid(
        base / "data", str(src), str(base / "out3"), "--quarantine", str(base / "q3"), key=OTHER_KEY
    )
    assert third.exit_code == 0, third.output + third.stderr
    (base / "record1.json").write_text(first.stdout)
    return {
        "src": src,
        "base": base,
        "out1": base / "out1",
        "out2": base / "out2",
        "out3": base / "out3",
        "data": base / "data",
    }


def inputs_by_new_uid(src: Path, key: str) -> dict[str, list[tuple[Path, Dataset]]]:
    pseudonyms = Pseudonymizer(key.encode())
    found: dict[str, list[tuple[Path, Dataset]]] = {}
    for path in sorted(src.iterdir()):
        if "too_short" in path.name:
            continue  # the one truncated file: rejected by the run, unreadable here
        ds = pydicom.dcmread(path, force=True)
        if "SOPInstanceUID" in ds:
            found.setdefault(pseudonyms.uid(str(ds.SOPInstanceUID)), []).append((path, ds))
    return found


def outputs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.dcm"))


def test_every_table_attribute_is_handled(runs: dict[str, Path]) -> None:
    record = json.loads((runs["out1"] / RECORD_NAME).read_text())
    options = DeidOptions(**record["options"])
    originals = inputs_by_new_uid(runs["src"], KEY)
    files = outputs(runs["out1"])
    assert len(files) == record["files"]["deidentified"] >= 20
    checked = 0
    for path in files:
        output = pydicom.dcmread(path)
        candidates = originals[str(output.SOPInstanceUID)]
        syntax = output.file_meta.TransferSyntaxUID
        same = [ds for _, ds in candidates if ds.file_meta.get("TransferSyntaxUID") == syntax]
        assert same, f"{path.name}: transfer syntax changed"
        original = same[0]
        # pixel data byte for byte (encapsulated fragments included)
        assert any(ds.get("PixelData") == output.get("PixelData") for ds in same)
        checked += check_against_table(original, output, options)
        assert_clean_structure(output)
        no_leak(original, output)
        assert output.PatientID == Pseudonymizer(KEY.encode()).patient_id(
            text_of(original.get("PatientID")).strip()
            or (
                "name:" + text_of(original.get("PatientName")).strip()
                if text_of(original.get("PatientName")).strip()
                else "study:" + str(original.StudyInstanceUID)
            )
        )
    assert checked > 500  # the table really was exercised


def test_quarantined_and_rejected_files_are_listed_not_written(runs: dict[str, Path]) -> None:
    record = json.loads((runs["out1"] / RECORD_NAME).read_text())
    counts = record["files"]
    assert counts["seen"] == len(list(runs["src"].iterdir()))
    assert (
        counts["deidentified"]
        + counts["quarantined"]
        + counts["rejected"]
        + counts["duplicates"]
        + counts["skipped"]
        == counts["seen"]
    )
    assert counts["quarantined"] >= 30  # the US and secondary-capture files
    assert sum(record["quarantine_reasons"].values()) == counts["quarantined"]
    assert any("Ultrasound" in reason for reason in record["quarantine_reasons"])
    assert any("truncated" in reason for reason in record["reject_reasons"])
    out_uids = {pydicom.dcmread(p).SOPInstanceUID for p in outputs(runs["out1"])}
    quarantine = runs["data"] / "quarantine"
    copied = list(quarantine.rglob("*.dcm"))
    assert len(copied) == counts["quarantined"]
    pseudonyms = Pseudonymizer(KEY.encode())
    sources = {p.read_bytes() for p in runs["src"].iterdir()}
    for path in copied:
        assert path.read_bytes() in sources  # copied as it arrived, for review
        original = pydicom.dcmread(path, force=True)
        assert pseudonyms.uid(str(original.SOPInstanceUID)) not in out_uids


def test_record_is_phi_free_and_in_the_database(runs: dict[str, Path]) -> None:
    text = (runs["out1"] / RECORD_NAME).read_text()
    record = json.loads(text)
    assert record["actions"]["X"] > 0 and record["actions"]["U"] > 0
    assert "PatientName" in record["attributes"]
    assert record["method_codes"][0] == "113100"
    for path in sorted(runs["src"].iterdir()):
        assert path.name not in text
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        for keyword in ("PatientID", "PatientName", "AccessionNumber", "StudyInstanceUID"):
            value = text_of(ds.get(keyword)).strip()
            if len(value) >= 4:
                assert value not in text, keyword
    assert KEY not in text
    assert json.loads((runs["base"] / "record1.json").read_text())["files"] == record["files"]
    db = Database(f"sqlite:///{runs['data'] / 'radpilot.db'}")
    with db.session() as session:
        rows = session.scalars(select(DeidRun).order_by(DeidRun.id)).all()
    db.dispose()
    assert len(rows) == 2  # the in-process run and the other-key run share the data dir
    assert rows[0].summary["files"] == record["files"]
    assert rows[0].finished_at is not None and "Basic" in rows[0].profile
    assert KEY not in json.dumps(rows[0].summary) and OTHER_KEY not in json.dumps(rows[1].summary)


def test_same_key_same_pseudonyms_across_processes(runs: dict[str, Path]) -> None:
    first = {p.relative_to(runs["out1"]): p.read_bytes() for p in outputs(runs["out1"])}
    second = {p.relative_to(runs["out2"]): p.read_bytes() for p in outputs(runs["out2"])}
    assert first.keys() == second.keys()
    assert first == second  # byte-identical, UIDs and shifted values included


def test_another_key_shares_no_pseudonym(runs: dict[str, Path]) -> None:
    def patients(folder: Path) -> dict[str, str]:
        return {pydicom.dcmread(p).PatientID: p.name for p in outputs(folder)}

    first = {p.name for p in outputs(runs["out1"])}
    third = {p.name for p in outputs(runs["out3"])}
    assert len(first) == len(third) and not first & third
    assert not set(patients(runs["out1"])) & set(patients(runs["out3"]))
    # the same patient is still one patient under the other key
    assert len(patients(runs["out1"])) == len(patients(runs["out3"]))


def test_no_key_is_a_failure_that_says_how_to_set_it(tmp_path: Path) -> None:
    result = run_deid(tmp_path / "data", str(pydicom_data_dir()), str(tmp_path / "o"), key=None)
    assert result.exit_code == 1
    assert "RADPILOT_DEID_KEY" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_short_key_and_bad_usage(tmp_path: Path) -> None:
    src = pydicom_data_dir()
    short = run_deid(tmp_path / "data", str(src), str(tmp_path / "o"), key="short")
    assert short.exit_code == 1 and "16 bytes" in short.stderr
    bad = run_deid(tmp_path / "data", str(src), str(tmp_path / "o"), "--format", "xml")
    assert bad.exit_code == 2
    gone = run_deid(tmp_path / "data", str(tmp_path / "nowhere"), str(tmp_path / "o"))
    assert gone.exit_code == 1 and "does not exist" in gone.stderr


def test_options_from_flags_override_settings(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    ct = pydicom.dcmread(pydicom_data_dir() / "MR2_UNCI.dcm")
    ct.save_as(src / "ct.dcm")
    result = run_deid(
        tmp_path / "data",
        str(src),
        str(tmp_path / "o"),
        "--retain-dates",
        "--no-clean-descriptors",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["options"]["retain_dates"] is True
    assert summary["options"]["clean_descriptors"] is False
    assert summary["method_codes"] == ["113100", "113107"]
    (out,) = outputs(tmp_path / "o")
    written = pydicom.dcmread(out)
    assert written.LongitudinalTemporalInformationModified == "MODIFIED"
    assert written.StudyDate and written.StudyDate != ct.StudyDate
    assert "StudyDescription" not in written  # X without Clean Descriptors


@pytest.mark.parametrize(
    "options",
    [
        DeidOptions(
            retain_dates=True,
            retain_patient_characteristics=True,
            retain_device_identity=True,
            clean_descriptors=True,
        ),
        DeidOptions(clean_descriptors=False),
    ],
    ids=["all-options", "basic-only"],
)
def test_engine_follows_the_table_under_options(options: DeidOptions) -> None:
    """Every readable pydicom-data file, quarantined ones included, through the API."""
    from radpilot.dicom.deid import Deidentifier

    engine = Deidentifier(KEY.encode(), options)
    checked = 0
    for path in sorted(pydicom_data_dir().glob("*.dcm")):
        try:
            original = pydicom.dcmread(path, force=True)
            if "SOPClassUID" not in original:
                continue
            output = engine.deidentify(copy.deepcopy(original)).dataset
        except Exception as exc:  # noqa: BLE001 - only the truncated file may fail
            assert "too_short" in path.name, f"{path.name}: {type(exc).__name__}"
            continue
        checked += check_against_table(original, output, options)
        assert_clean_structure(output)
        assert output.get("PixelData") == original.get("PixelData")
    assert checked > 1000
