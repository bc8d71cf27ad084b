"""TID 1500 Comprehensive SR: content, identity of the model, validity, determinism."""

from __future__ import annotations

import io
import math
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from radpilot.models.prediction import Box, Finding, Measurement, Prediction
from radpilot.results.coding import PRIVATE_SCHEME, text_value
from radpilot.results.context import ResultError
from radpilot.results.sr import build_sr
from tests.results_helpers import (
    WEIGHTS_SHA256,
    content_items,
    ct_series,
    data_store_file,
    dciodvfy_errors,
    make_ctx,
    pydicom_file,
    ref_of,
    write,
)


def _classification(ds: Dataset) -> Prediction:
    image = ref_of(ds)
    return Prediction(
        task="classification",
        findings=[
            Finding("pneumonia", 0.8731, 0.31, "high-sensitivity", positive=True, critical=True),
            Finding("pleural_effusion", 0.1205, 0.42, "high-sensitivity", positive=False),
            Finding("odd \\ label", 0.5, None, None),
        ],
        images=[image],
        key_image=image,
        boxes=[Box("nodule", 0.66, image, 10.0, 12.5, 30.0, 40.25)],
        measurements=[Measurement("diameter", 12.5, "mm", image), Measurement("ratio", 0.4, "1")],
    )


@pytest.fixture(scope="module")
def ct() -> Dataset:
    return pydicom_file("CT_small.dcm")


def test_sr_reads_back_with_the_findings_and_the_model(ct: Dataset, tmp_path: Path) -> None:
    ctx = make_ctx()
    path = write(build_sr(_classification(ct), [ct], ctx), tmp_path / "sr.dcm")
    sr = hd.sr.srread(path)
    assert isinstance(sr, hd.sr.ComprehensiveSR)
    items = list(content_items(sr))
    texts = {value for _, value in items if isinstance(value, str)}
    assert "chest-xr" in texts  # Algorithm Name
    assert "1.2.0" in texts  # Algorithm Version
    assert f"weights_sha256={WEIGHTS_SHA256}" in texts  # Algorithm Parameters
    assert ("Device Observer Serial Number", WEIGHTS_SHA256) in items
    assert ("Device Observer Model Name", "chest-xr") in items
    assert ("CAD Operating Point Description", "high-sensitivity") in items

    groups = {g.tracking_identifier: g for g in sr.content.get_image_measurement_groups()}
    pneumonia = groups["pneumonia"]
    assert pneumonia.finding_type.value == "233604007"  # SNOMED CT Pneumonia
    values = {m.name.meaning: m.value for m in pneumonia.get_measurements()}
    assert values == {"Score": 0.8731, "Threshold Value": 0.31}
    [evaluation] = pneumonia.get_qualitative_evaluations()
    assert evaluation.value.meaning == "Present"
    [effusion_evaluation] = groups["pleural_effusion"].get_qualitative_evaluations()
    assert effusion_evaluation.value.meaning == "Absent"
    odd = groups[text_value("odd \\ label")]
    assert odd.finding_type.scheme_designator == PRIVATE_SCHEME
    assert odd.get_qualitative_evaluations()[0].value.meaning == "Presence Undetermined"
    assert "Threshold Value" not in {m.name.meaning for m in odd.get_measurements()}

    measured = {
        m.name.meaning: (m.value, m.unit.value) for m in groups["measurements"].get_measurements()
    }
    assert measured == {"Diameter": (12.5, "mm"), "ratio": (0.4, "1")}


def test_sr_header_identity_and_study(ct: Dataset, tmp_path: Path) -> None:
    ctx = make_ctx()
    sr = pydicom.dcmread(write(build_sr(_classification(ct), [ct], ctx), tmp_path / "sr.dcm"))
    assert sr.StudyInstanceUID == ct.StudyInstanceUID
    assert sr.PatientID == ct.PatientID
    assert sr.PatientName == ct.PatientName
    assert sr.SeriesInstanceUID == ctx.uid("sr-series") != ct.SeriesInstanceUID
    assert sr.SOPInstanceUID == ctx.uid("sr")
    assert sr.SeriesNumber == 9001
    assert sr.PreliminaryFlag == "PRELIMINARY"
    assert sr.VerificationFlag == "UNVERIFIED"
    ours = [e for e in sr.ContributingEquipmentSequence if e.get("DeviceSerialNumber")]
    assert [(e.Manufacturer, e.ManufacturerModelName, e.SoftwareVersions) for e in ours] == [
        ("radpilot tests", "chest-xr", "1.2.0")
    ]
    assert ours[0].DeviceSerialNumber == WEIGHTS_SHA256
    assert WEIGHTS_SHA256 in ours[0].ContributionDescription
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[
        0
    ].ReferencedSOPInstanceUID == (ct.SOPInstanceUID)


def test_box_is_a_closed_polyline_on_its_image(ct: Dataset, tmp_path: Path) -> None:
    sr = hd.sr.srread(write(build_sr(_classification(ct), [ct], make_ctx()), tmp_path / "s.dcm"))
    [group] = sr.content.get_planar_roi_measurement_groups()
    region = group.roi
    assert region.GraphicType == "POLYLINE"
    points = np.asarray(region.GraphicData, dtype=float).reshape(-1, 2)
    assert points.tolist() == [[10, 12.5], [30, 12.5], [30, 40.25], [10, 40.25], [10, 12.5]]
    [source] = region.ContentSequence
    assert source.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ct.SOPInstanceUID
    assert [m.value for m in group.get_measurements()] == [0.66]


def test_sr_validates_with_dciodvfy(ct: Dataset, tmp_path: Path) -> None:
    path = write(build_sr(_classification(ct), [ct], make_ctx()), tmp_path / "sr.dcm")
    assert dciodvfy_errors(path) == []


def test_monochrome1_radiograph_with_library_entry_validates(tmp_path: Path) -> None:
    cr = data_store_file("RG3_UNCR.dcm", stop_before_pixels=True)  # CR, MONOCHROME1
    image = ref_of(cr)
    prediction = Prediction(
        task="detection",
        findings=[Finding("fracture", 0.93, 0.5, "default", positive=True)],
        images=[image],
        boxes=[Box("fracture", 0.93, image, 900, 1000, 1100, 1300)],
    )
    path = write(build_sr(prediction, [cr], make_ctx()), tmp_path / "cr.dcm")
    assert dciodvfy_errors(path) == []
    items = list(content_items(pydicom.dcmread(path)))
    assert ("Pixel Data Rows", float(cr.Rows)) in items  # the image library entry
    assert ("Modality", "Computed Radiography") in items


def test_multi_slice_series_is_referenced_as_evidence(tmp_path: Path) -> None:
    series = ct_series()
    images = [ref_of(ds) for ds in series]
    prediction = Prediction(
        task="classification",
        findings=[Finding("nodule", 0.7, 0.5, "default", positive=True)],
        images=images,
    )
    path = write(build_sr(prediction, series, make_ctx()), tmp_path / "series.dcm")
    sr = hd.sr.srread(path)
    referenced = {uid for _, _, uid, _ in sr.get_evidence()}
    assert referenced == {ds.SOPInstanceUID for ds in series}
    [group] = sr.content.get_image_measurement_groups()
    assert len(group.source_images) == len(series)


def test_rebuilding_gives_the_same_uids_and_another_key_other_uids(ct: Dataset) -> None:
    prediction = _classification(ct)
    first, second = build_sr(prediction, [ct], make_ctx()), build_sr(prediction, [ct], make_ctx())
    assert first.SOPInstanceUID == second.SOPInstanceUID
    assert first.SeriesInstanceUID == second.SeriesInstanceUID
    other = build_sr(prediction, [ct], make_ctx("study-1:chest-xr@1.2.0:series-2"))
    assert other.SOPInstanceUID != first.SOPInstanceUID


def test_nothing_to_report_is_refused(ct: Dataset) -> None:
    with pytest.raises(ResultError, match="nothing"):
        build_sr(Prediction(task="classification", images=[ref_of(ct)]), [ct], make_ctx())


def test_image_not_among_sources_is_refused(ct: Dataset) -> None:
    mr = pydicom_file("MR_small.dcm")
    prediction = Prediction(
        task="classification", findings=[Finding("x", 0.5)], images=[ref_of(mr)]
    )
    with pytest.raises(ResultError, match="not among the sources"):
        build_sr(prediction, [ct], make_ctx())
    with pytest.raises(ResultError, match="studies"):
        build_sr(prediction, [ct, mr], make_ctx())


@pytest.mark.slow  # ~7 s: 25 SRs built, written and parsed
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    score=st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    threshold=st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    label=st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40
    ).filter(lambda s: s.strip() == s and s.strip() != ""),
)
def test_scores_and_labels_round_trip(score: float, threshold: float, label: str) -> None:
    ct = pydicom_file("CT_small.dcm", stop_before_pixels=True)
    prediction = Prediction(
        task="classification",
        findings=[Finding(label, score, threshold, "op", positive=score >= threshold)],
        images=[ref_of(ct)],
    )
    buffer = io.BytesIO()
    build_sr(prediction, [ct], make_ctx()).save_as(buffer, enforce_file_format=True)
    sr = hd.sr.srread(io.BytesIO(buffer.getvalue()))
    [group] = sr.content.get_image_measurement_groups()
    assert group.tracking_identifier == label
    values = {m.name.meaning: m.value for m in group.get_measurements()}
    assert values["Score"] == score or math.isclose(values["Score"], score, abs_tol=1e-15)
    assert values["Threshold Value"] == threshold or math.isclose(
        values["Threshold Value"], threshold, abs_tol=1e-15
    )
    verdict = group.get_qualitative_evaluations()[0].value.meaning
    assert verdict == ("Present" if score >= threshold else "Absent")


def test_sources_missing_type_2_attributes_still_give_a_valid_sr(tmp_path: Path) -> None:
    ct = pydicom_file("CT_small.dcm", stop_before_pixels=True)
    for keyword in ("PatientName", "PatientBirthDate", "AccessionNumber", "StudyID", "StudyTime"):
        delattr(ct, keyword)
    prediction = Prediction(
        task="classification", findings=[Finding("x", 0.5)], images=[ref_of(ct)]
    )
    path = write(build_sr(prediction, [ct], make_ctx()), tmp_path / "sr.dcm")
    assert dciodvfy_errors(path) == []
    sr = pydicom.dcmread(path)
    assert sr.PatientName == "" and sr.AccessionNumber == ""
    assert "PatientName" not in ct  # the caller's dataset is not changed


def test_an_image_highdicom_cannot_describe_is_left_out_with_a_logged_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pydicom.uid import generate_uid

    from radpilot.results.library import library_headers

    def header(sop_class: str) -> Dataset:
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
        ds.Rows, ds.Columns, ds.Modality = 4, 4, "OT"
        return ds

    image = header("1.2.840.10008.5.1.4.1.1.7")  # secondary capture: described
    odd = header("1.2.3.4.5.6")  # not an image storage class
    with caplog.at_level("INFO", logger="radpilot.results.library"):
        headers = library_headers([image, odd])
    assert [str(h.SOPInstanceUID) for h in headers] == [str(image.SOPInstanceUID)]
    (record,) = caplog.records
    assert "left out of the SR image library" in record.getMessage()
    assert str(odd.SOPInstanceUID) not in record.getMessage()  # a digest, not the UID


def test_a_slice_unlike_the_first_of_its_kind_leaves_the_library_not_the_sr(
    tmp_path: Path,
) -> None:
    """The library is checked on the first header of each kind; a later slice whose
    position cannot be read (a DS of letters, as some files carry) makes highdicom refuse
    the quick library, and the SR is built again with every header checked."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    from radpilot.results.library import library_headers

    series = ct_series()
    position = Tag(0x0020, 0x0032)
    broken = series[1]
    broken._dict[position] = RawDataElement(position, "DS", 6, b"a\\b\\c ", 0, False, True)
    assert len(library_headers(series)) == len(series)  # the quick check lets it through
    described = library_headers(series, probe_all=True)
    assert len(described) == len(series) - 1
    assert str(broken.SOPInstanceUID) not in {str(h.SOPInstanceUID) for h in described}
    prediction = Prediction(
        task="classification",
        findings=[Finding("nodule", 0.7, 0.5, "default", positive=True)],
        images=[ref_of(ds) for ds in series],
    )
    sr = hd.sr.srread(write(build_sr(prediction, series, make_ctx()), tmp_path / "sr.dcm"))
    referenced = {uid for _, _, uid, _ in sr.get_evidence()}
    assert referenced == {ds.SOPInstanceUID for ds in series}  # still evidence


def test_highdicom_checks_each_kind_of_header_once_per_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from highdicom.sr import ImageLibraryEntryDescriptors

    from radpilot.results import library

    checked: list[str] = []

    def counting(header: Dataset) -> ImageLibraryEntryDescriptors:
        checked.append(str(header.SOPInstanceUID))
        return ImageLibraryEntryDescriptors(header)

    monkeypatch.setattr(library, "ImageLibraryEntryDescriptors", counting)
    monkeypatch.setattr(library, "_ACCEPTED", set())
    series = ct_series()
    for ds in series:  # one SR per image, as for single-image studies
        assert len(library.library_headers([ds])) == 1
    assert checked == [str(series[0].SOPInstanceUID)]
    assert len(library.library_headers(series, probe_all=True)) == len(series)
    assert len(checked) == 1 + len(series)  # probe_all still checks every one
