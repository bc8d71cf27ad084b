"""The de-identification engine on real files: options, nesting, references, quarantine."""

from __future__ import annotations

import copy
import datetime as dt
import importlib.util
import json
import logging
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import CTImageStorage

from radpilot.core.errors import ConfigurationError
from radpilot.core.settings import DeidOptions
from radpilot.dicom.deid import (
    RECORD_NAME,
    Deidentifier,
    Pseudonymizer,
    deidentify_tree,
    load_table,
    quarantine_reason,
)
from tests.conftest import missing

KEY = b"engine-test-key-0123456789abcdef"
TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"


def data_store(name: str) -> Path:
    spec = importlib.util.find_spec("data_store")
    if spec is None or not spec.submodule_search_locations:
        missing("pip install pydicom-data is needed")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    if not path.is_file():
        missing(f"pydicom-data lacks {name}")
    return path


def ct() -> pydicom.FileDataset:
    return pydicom.dcmread(TEST_FILES / "CT_small.dcm")


def deid(ds: Dataset, **options: bool) -> Dataset:
    return Deidentifier(KEY, DeidOptions(**options)).deidentify(ds).dataset


def test_table_is_the_full_annex_e_table() -> None:
    table = load_table()
    keys = table.by_key()
    assert len(table.rules) >= 650 and table.edition >= "2026"
    assert keys["00100010"].basic == "Z" and keys["00100020"].basic == "Z/D"
    assert keys["0020000D"].basic == "U" and keys["00081140"].basic == "X/Z/U*"
    assert {"50XXXXXX", "60XX3000", "60XX4000", "PRIVATE"} <= keys.keys()
    assert keys["00080020"].options["retain_longitudinal_modified_dates"] == "C"
    assert keys["00101010"].options["retain_patient_characteristics"] == "K"
    assert keys["00181000"].options["retain_device_identity"] == "K"
    assert keys["00081030"].options["clean_descriptors"] == "C"
    used = {code for rule in table.rules for code in (rule.basic, *rule.options.values())}
    assert used == {"D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}


def test_method_codes_are_cid_7050() -> None:
    options = DeidOptions(
        retain_dates=True,
        retain_patient_characteristics=True,
        retain_device_identity=True,
        clean_descriptors=True,
    )
    out = deid(ct(), **options.model_dump())
    got = {
        (i.CodeValue, i.CodingSchemeDesignator, i.CodeMeaning)
        for i in out.DeidentificationMethodCodeSequence
    }
    expected = {
        (c.value, c.scheme_designator, c.meaning)
        for c in (
            codes.DCM.BasicApplicationConfidentialityProfile,
            codes.DCM.RetainLongitudinalTemporalInformationModifiedDatesOption,
            codes.DCM.RetainPatientCharacteristicsOption,
            codes.DCM.RetainDeviceIdentityOption,
            codes.DCM.CleanDescriptorsOption,
        )
    }
    assert got == expected
    assert out.PatientIdentityRemoved == "YES"
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert all(len(v) <= 64 for v in out.DeidentificationMethod)
    plain = deid(ct(), clean_descriptors=False)
    assert [i.CodeValue for i in plain.DeidentificationMethodCodeSequence] == ["113100"]
    assert plain.LongitudinalTemporalInformationModified == "REMOVED"


def test_earlier_deidentification_methods_are_kept() -> None:
    ds = ct()
    ds.DeidentificationMethod = "site anonymiser 1.0"
    out = deid(ds)
    assert out.DeidentificationMethod[0] == "site anonymiser 1.0"
    assert len(out.DeidentificationMethod) > 1


def series_with_references() -> tuple[Dataset, Dataset]:
    first, second = ct(), ct()
    second.SOPInstanceUID = first.SOPInstanceUID + ".2"
    ref = Dataset()
    ref.ReferencedSOPClassUID = CTImageStorage
    ref.ReferencedSOPInstanceUID = first.SOPInstanceUID
    ref.add_new(0x00290010, "LO", "ACME 1.0")
    ref.add_new(0x00291001, "LO", "Doe^John")  # a private name, nested
    inner = Dataset()
    inner.PatientName = "Doe^John"
    inner.StudyInstanceUID = first.StudyInstanceUID
    ref.ReferencedPatientSequence = Sequence([inner])  # X: removed with its content
    second.SourceImageSequence = Sequence([ref])
    second.ReferencedImageSequence = Sequence([copy.deepcopy(ref)])
    return first, second


def test_references_keep_their_integrity_at_any_depth() -> None:
    first, second = series_with_references()
    original_first = first.SOPInstanceUID
    engine = Deidentifier(KEY, DeidOptions())
    a = engine.deidentify(first).dataset
    b = engine.deidentify(second).dataset
    assert a.SOPInstanceUID != original_first
    assert b.SourceImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert b.ReferencedImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert b.SourceImageSequence[0].ReferencedSOPClassUID == CTImageStorage  # not U
    assert a.StudyInstanceUID == b.StudyInstanceUID != ct().StudyInstanceUID
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID != ct().FrameOfReferenceUID
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    for item in (b.SourceImageSequence[0], b.ReferencedImageSequence[0]):
        assert not any(elem.tag.is_private for elem in item)
        assert "ReferencedPatientSequence" not in item
    assert a.PatientID == b.PatientID == Pseudonymizer(KEY).patient_id(ct().PatientID)
    assert a.PatientName == a.PatientID


def test_private_tags_are_removed_unless_on_the_safe_list() -> None:
    ds = ct()
    assert any(elem.tag.is_private for elem in ds)
    out = deid(ds)
    assert not any(elem.tag.is_private for elem in out.iterall())
    keep = Deidentifier(KEY, DeidOptions(), safe_private=[("GEMS_IDEN_01", 0x0009, 0x01)])
    kept = keep.deidentify(ct()).dataset
    private = {int(elem.tag) for elem in kept if elem.tag.is_private}
    assert private == {0x00090010, 0x00091001}  # the creator and the one safe element
    assert "113111" in {i.CodeValue for i in kept.DeidentificationMethodCodeSequence}


def test_file_meta_and_group_lengths_are_cleaned() -> None:
    ds = ct()
    assert ds.file_meta.SourceApplicationEntityTitle
    ds.add_new(0x00080000, "UL", 100)
    out = deid(ds)
    assert "SourceApplicationEntityTitle" not in out.file_meta
    assert 0x00080000 not in out
    assert out.preamble == b"\x00" * 128


def test_overlays_and_curves_are_removed() -> None:
    ds = pydicom.dcmread(data_store("MR-SIEMENS-DICOM-WithOverlays.dcm"))
    assert 0x60003000 in ds
    ds.add_new(0x50003000, "OW", b"\x00\x01" * 8)  # curve data (retired, still in the table)
    out = deid(ds)
    assert not [e for e in out if e.tag.group & 0xFF00 in (0x5000, 0x6000)]
    assert (
        out.PixelData == pydicom.dcmread(data_store("MR-SIEMENS-DICOM-WithOverlays.dcm")).PixelData
    )


def test_modified_dates_keep_intervals_within_a_patient() -> None:
    early, late = ct(), ct()
    late.StudyInstanceUID += ".9"
    late.StudyDate = "20050301"
    late.AcquisitionDateTime = "20050301101530.25+0100"
    engine = Deidentifier(KEY, DeidOptions(retain_dates=True))
    a, b = engine.deidentify(early).dataset, engine.deidentify(late).dataset

    def day(text: str) -> dt.date:
        return dt.datetime.strptime(text[:8], "%Y%m%d").date()

    assert day(b.StudyDate) - day(a.StudyDate) == day("20050301") - day(ct().StudyDate)
    assert a.StudyDate != ct().StudyDate and day(a.StudyDate) < day(ct().StudyDate)
    assert b.AcquisitionDateTime[8:] == "101530.25+0100"
    assert day(b.AcquisitionDateTime) == day(b.StudyDate)
    assert a.StudyTime == ct().StudyTime  # whole days: times are kept
    assert not a.get("PatientBirthDate")  # Z in every column
    other = ct()
    other.PatientID = "someone else"
    c = engine.deidentify(other).dataset
    assert c.StudyDate != a.StudyDate  # another patient, another offset (fixed key)
    without = deid(ct())
    assert not without.get("StudyDate") and not without.get("AcquisitionDate")  # Z, X/Z


def test_patient_characteristics_and_device_identity_options() -> None:
    source = ct()
    source.PatientWeight = "71.5"
    plain = deid(ct())
    kept = deid(ct(), retain_patient_characteristics=True, retain_device_identity=True)
    assert kept.PatientSex == source.PatientSex and kept.PatientAge == source.PatientAge
    assert "PatientAge" not in plain and not plain.get("PatientSex")
    assert kept.StationName == source.StationName
    assert plain.get("StationName") != source.StationName


def test_clean_descriptors_redacts_identifying_words() -> None:
    ds = ct()
    ds.PatientName = "Doe^John"
    ds.StudyDescription = "CT chest, follow-up of JOHN DOE after fall"
    ds.SeriesDescription = "AXIAL 5mm"
    out = deid(ds, clean_descriptors=True)
    assert out.StudyDescription == "CT chest, follow-up of *** *** after fall"
    assert out.SeriesDescription == "AXIAL 5mm"
    removed = deid(ct(), clean_descriptors=False)
    assert "StudyDescription" not in removed and "SeriesDescription" not in removed


def test_result_counts_actions_without_values() -> None:
    result = Deidentifier(KEY, DeidOptions()).deidentify(ct())
    assert sum(result.actions.values()) == sum(result.attributes.values())
    assert result.actions["U"] >= 4 and result.actions["X"] > 10
    assert ("PatientName", "D") in result.attributes
    assert ("private", "X") in result.attributes
    labels = " ".join(label for label, _ in result.attributes)
    assert "CLUNIE" not in labels.upper() and ct().PatientID not in labels


def test_key_is_checked_and_never_shown() -> None:
    with pytest.raises(ConfigurationError, match="RADPILOT_DEID_KEY"):
        Deidentifier(b"short", DeidOptions())
    engine = Deidentifier(KEY, DeidOptions())
    assert KEY.decode() not in repr(engine) and KEY.decode() not in repr(engine.pseudonyms)


# --- quarantine --------------------------------------------------------------------------
def test_quarantine_rules_on_real_files() -> None:
    us = pydicom.dcmread(data_store("US1_UNCR.dcm"))
    assert "Ultrasound" in (quarantine_reason(us) or "")
    sc = pydicom.dcmread(data_store("SC_rgb.dcm"))
    assert "Secondary Capture" in (quarantine_reason(sc) or "")
    us_no = pydicom.dcmread(data_store("JPGLosslessP14SV1_1s_1f_8b.dcm"))
    assert us_no.BurnedInAnnotation == "NO" and quarantine_reason(us_no) is None
    plain = ct()
    assert quarantine_reason(plain) is None
    plain.BurnedInAnnotation = "YES"
    assert quarantine_reason(plain) == "BurnedInAnnotation is YES"
    pdf = ct()
    pdf.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    pdf.BurnedInAnnotation = "NO"
    assert "Encapsulated PDF" in (quarantine_reason(pdf) or "")
    lens = ct()
    lens.SOPClassUID = "1.2.840.10008.5.1.4.1.1.78.1"  # Lensometry: not a capture class
    assert quarantine_reason(lens) is None


def test_tree_quarantines_rejects_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "Doe^John"  # a folder named after the patient, as exported by PACS
    src.mkdir()
    good = ct()
    good.save_as(src / "ct.dcm")
    burned = ct()
    burned.SOPInstanceUID += ".7"
    burned.BurnedInAnnotation = "YES"
    burned.save_as(src / "burned.dcm")
    (src / "us.dcm").write_bytes(data_store("US1_UNCR.dcm").read_bytes())
    (src / "notes.txt").write_text("not DICOM at all")
    (src / "empty.dcm").write_bytes(b"")
    whole = (src / "ct.dcm").read_bytes()
    (src / "cut.dcm").write_bytes(whole[: len(whole) // 3])
    (src / "DICOMDIR").write_bytes((TEST_FILES / "dicomdirtests" / "DICOMDIR").read_bytes())
    out, quarantine = tmp_path / "out", tmp_path / "quarantine"
    engine = Deidentifier(KEY, DeidOptions())
    with caplog.at_level(logging.DEBUG, logger="radpilot"):
        record = deidentify_tree(src, out, engine, quarantine)
    summary = record.to_json()
    assert summary["files"]["seen"] == 7
    assert summary["files"]["deidentified"] == 1
    assert summary["files"]["skipped"] == 1
    assert summary["quarantine_reasons"] == {
        "BurnedInAnnotation is YES": 1,
        "Ultrasound Image Storage without BurnedInAnnotation NO": 1,
    }
    assert sum(summary["reject_reasons"].values()) == 3
    assert summary["reject_reasons"]["malformed DICOM (truncated)"] == 1  # cut.dcm
    assert summary["reject_reasons"]["not a DICOM file"] == 2  # notes.txt, empty.dcm
    written = sorted(out.rglob("*.dcm"))
    assert len(written) == 1 and pydicom.dcmread(written[0]).PixelData == good.PixelData
    assert sorted(p.name for p in quarantine.iterdir()) == sorted(
        n["file"] for n in summary["quarantined"]
    )
    text = (out / RECORD_NAME).read_text()
    assert json.loads(text)["files"] == summary["files"]
    for secret in ("Doe", "John", "notes", "burned", good.PatientID, KEY.decode()):
        assert secret not in text and secret not in caplog.text
    refs = {n["ref"] for n in summary["quarantined"] + summary["rejected"] + summary["skipped"]}
    assert len(refs) == 6 and engine.pseudonyms.ref("burned.dcm") in refs
