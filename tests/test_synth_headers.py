"""Header variety: vendors, sites, patients of every age, consistent dates; drift."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from pydicom import Dataset

from radpilot.data.synth import RadiographOptions, SynthCase, radiograph_study
from radpilot.data.synth_common import Variation, random_stream
from radpilot.data.synth_headers import Drift, SynthModality, dicom_age, draw_header
from tests.pipeline_helpers import cases


@pytest.fixture(scope="module")
def hundred() -> list[SynthCase]:
    return cases(100)


def _studies(source: list[SynthCase], variation: Variation, modality: str = "DX") -> list[Dataset]:
    options = RadiographOptions(size=32, modality=SynthModality(modality))
    return [
        radiograph_study(case, options=options, variation=variation).datasets[0] for case in source
    ]


def _date(text: str) -> dt.date:
    return dt.datetime.strptime(text, "%Y%m%d").date()


def _years(ds: Dataset) -> int:
    return int(ds.PatientAge[:3]) if ds.PatientAge.endswith("Y") else 0


def test_a_hundred_studies_vary_in_vendor_site_and_patient(hundred: list[SynthCase]) -> None:
    studies = _studies(hundred, Variation(vary_headers=True))
    assert len({ds.Manufacturer for ds in studies}) >= 4
    assert len({ds.InstitutionName for ds in studies}) >= 3
    assert len({ds.StationName for ds in studies}) >= 6
    assert {ds.PatientSex for ds in studies} == {"F", "M"}
    ages = [_years(ds) for ds in studies]
    assert min(ages) < 2 and any(2 <= a < 18 for a in ages) and max(ages) >= 60
    assert any(ds.PatientAge.endswith(("M", "D")) for ds in studies)  # infants
    for ds in studies:
        study_date = _date(ds.StudyDate)
        assert ds.PatientAge == dicom_age(_date(ds.PatientBirthDate), study_date)
        assert dt.date(2024, 1, 1) <= study_date <= dt.date(2025, 12, 31)
        assert ds.PatientName == f"SYNTH^{ds.PatientID}"
        child = _years(ds) < 16
        assert ds.ProtocolName.startswith("PAED") == child
        assert ("Children" in ds.InstitutionName) <= child  # adults never go there
        assert 192 <= float(ds.PixelSpacing[0]) * 32 <= 430  # field side, mm (0.55 x 350)
    fields = [(float(ds.PixelSpacing[0]) * 32, _years(ds)) for ds in studies]
    infants = [f for f, years in fields if years < 2]
    adults = [f for f, years in fields if years >= 16]
    assert max(infants) < sum(adults) / len(adults)  # collimated to a small child


def test_without_variety_the_header_is_the_fixed_one(hundred: list[SynthCase]) -> None:
    studies = _studies(hundred[:5], Variation())
    assert {ds.Manufacturer for ds in studies} == {"radpilot synth"}
    for case, ds in zip(hundred[:5], studies, strict=True):
        assert ds.PatientID == case.patient_id and ds.PatientAge == f"{case.age_years:03d}Y"
        assert ds.PixelSpacing == [0.35, 0.35] and "ProtocolName" not in ds


def test_cr_studies_come_from_cr_readers(hundred: list[SynthCase]) -> None:
    studies = _studies(hundred[:40], Variation(vary_headers=True), "CR")
    assert {ds.Modality for ds in studies} == {"CR"}
    assert {ds.SOPClassUID for ds in studies} == {"1.2.840.10008.5.1.4.1.1.1"}
    assert {ds.ManufacturerModelName for ds in studies} <= {
        "FCR PROFECT CS",
        "DirectView CR 975",
        "CR 85-X",
        "REGIUS 190",
    }
    assert "PresentationIntentType" not in studies[0]


def test_new_scanner_drift_brings_a_device_no_baseline_study_has(
    hundred: list[SynthCase],
) -> None:
    baseline = _studies(hundred, Variation(vary_headers=True))
    drifted = _studies(hundred[:20], Variation(vary_headers=True, drift=Drift.NEW_SCANNER))
    known = {(ds.Manufacturer, ds.ManufacturerModelName) for ds in baseline}
    new = {(ds.Manufacturer, ds.ManufacturerModelName) for ds in drifted}
    assert len(new) == 1 and not new & known
    # the same patients, sites and protocols: only the scanner moved
    assert [ds.PatientID for ds in drifted] == [ds.PatientID for ds in baseline[:20]]
    assert [ds.ProtocolName for ds in drifted] == [ds.ProtocolName for ds in baseline[:20]]
    assert all(ds.StationName.endswith("-XRNEW") for ds in drifted)


def test_new_protocol_drift_changes_protocol_and_technique(hundred: list[SynthCase]) -> None:
    baseline = _studies(hundred, Variation(vary_headers=True))
    drifted = _studies(hundred[:20], Variation(vary_headers=True, drift=Drift.NEW_PROTOCOL))
    assert not {ds.ProtocolName for ds in drifted} & {ds.ProtocolName for ds in baseline}
    assert min(float(ds.KVP) for ds in drifted) > max(float(ds.KVP) for ds in baseline)
    assert [ds.Manufacturer for ds in drifted] == [ds.Manufacturer for ds in baseline[:20]]


def test_ct_headers_use_ct_devices_and_kilovolt_steps() -> None:
    headers = [draw_header("CT", random_stream("t", i), f"P{i}") for i in range(60)]
    assert {h.device.modality for h in headers} == {SynthModality.CT}
    assert {h.kvp for h in headers} <= {80.0, 100.0, 120.0, 140.0}
    assert len({h.device.manufacturer for h in headers}) >= 4
    kernels = Counter(h.device.kernel for h in headers)
    assert len(kernels) >= 3


def test_dicom_age_units() -> None:
    assert dicom_age(dt.date(2020, 5, 10), dt.date(2020, 5, 24)) == "014D"
    assert dicom_age(dt.date(2020, 5, 10), dt.date(2021, 5, 9)) == "011M"
    assert dicom_age(dt.date(2020, 5, 10), dt.date(2021, 5, 10)) == "001Y"
    assert dicom_age(dt.date(1930, 2, 28), dt.date(2025, 2, 27)) == "094Y"
    with pytest.raises(ValueError, match="after the study date"):
        dicom_age(dt.date(2025, 1, 2), dt.date(2025, 1, 1))
