"""CT phantoms: tissue values, lesions where the truth says, valid DICOM, measurable masks."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radpilot.data.measure import (
    DiameterRule,
    VoxelSpacing,
    feret_diameter_mm,
    measure_mask,
    spacing_from_datasets,
)
from radpilot.data.synth_common import SynthStudy, Variation
from radpilot.data.synth_ct import CtGeometry, CtOptions, Lesion, save_masks
from radpilot.data.synth_ct_series import ct_study
from radpilot.data.synth_perturb import PerturbationSpec
from tests.conftest import require_tool

OPTIONS = CtOptions(size=64, slices=32, slice_thickness_mm=2.5, fov_mm=200.0)


@pytest.fixture(scope="module")
def study() -> SynthStudy:
    return ct_study("phantom/ct/1", 3, options=OPTIONS)


def _hu(study: SynthStudy) -> npt.NDArray[np.float64]:
    return np.stack(
        [d.pixel_array.astype(np.float64) + float(d.RescaleIntercept) for d in study.datasets]
    )


def _voxel_positions(study: SynthStudy) -> npt.NDArray[np.float64]:
    """Patient (x, y, z) of every voxel, from the written IPP, IOP and PixelSpacing."""
    first = study.datasets[0]
    rows, cols = int(first.Rows), int(first.Columns)
    spacing = float(first.PixelSpacing[0])
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    positions = []
    for ds in study.datasets:
        origin = np.array([float(v) for v in ds.ImagePositionPatient])
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        along_row, along_column = iop[:3], iop[3:]
        positions.append(
            origin + spacing * c[..., None] * along_row + spacing * r[..., None] * along_column
        )
    return np.stack(positions)


def test_tissues_have_their_hounsfield_units(study: SynthStudy) -> None:
    hu = _hu(study)
    lesions = np.any(np.stack(study.masks), axis=0)
    assert np.median(hu[:, 0, 0]) == pytest.approx(-1000, abs=3)  # air in the corner
    centre = hu[:, 26:38, 20:44][~lesions[:, 26:38, 20:44]]
    assert np.median(centre) == pytest.approx(40, abs=2) and 8 < centre.std() < 12
    values = hu[~lesions].round(-1)
    for tissue in (-100, 700):  # fat ring, vertebra: each covers many voxels
        assert (np.abs(hu[~lesions] - tissue) < 25).sum() > 100, tissue
    assert values.max() < 800


def test_lesions_are_where_and_what_the_truth_says(study: SynthStudy) -> None:
    hu, positions = _hu(study), _voxel_positions(study)
    assert len(study.lesions) == len(study.masks) == 3
    for truth, mask in zip(study.lesions, study.masks, strict=True):
        assert abs(float(np.median(hu[mask])) - float(truth["hu"])) < 3
        centroid = positions[mask].mean(axis=0)
        assert np.allclose(centroid, truth["centre_mm"], atol=3.125)
        assert truth["mask_voxels"] == int(mask.sum())
        spacing = spacing_from_datasets(study.datasets)
        measured = measure_mask(mask, spacing)
        assert truth["mask_volume_ml"] == pytest.approx(measured.volume_ml, abs=1e-4)
        assert truth["mask_diameter_mm"] == pytest.approx(measured.longest_diameter_mm, abs=1e-3)


def test_rotated_and_cropped_series_keep_lesions_in_patient_coordinates() -> None:
    specs = tuple(PerturbationSpec.parse(p) for p in ("rotation=35", "crop=0.8"))
    moved = ct_study("phantom/ct/1", 3, options=OPTIONS, variation=Variation(perturbations=specs))
    first = moved.datasets[0]
    assert (first.Rows, first.Columns) == (51, 51)
    iop = [float(v) for v in first.ImageOrientationPatient]
    assert iop[:2] == pytest.approx([math.cos(math.radians(35)), math.sin(math.radians(35))])
    positions = _voxel_positions(moved)
    for truth, mask in zip(moved.lesions, moved.masks, strict=True):
        assert mask.shape == (32, 51, 51)
        assert np.allclose(positions[mask].mean(axis=0), truth["centre_mm"], atol=3.125)


def test_a_slice_passes_dciodvfy(study: SynthStudy, tmp_path: Path) -> None:
    dciodvfy = require_tool("dciodvfy")
    path = tmp_path / "slice.dcm"
    study.datasets[10].save_as(path, enforce_file_format=True)
    report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
    output = report.stdout + report.stderr
    assert "CTImage" in output
    assert [line for line in output.splitlines() if line.startswith("Error")] == []


def test_series_geometry_and_identity(study: SynthStudy) -> None:
    spacing = spacing_from_datasets(study.datasets)
    assert spacing == VoxelSpacing(2.5, 3.125, 3.125)
    assert len({d.SOPInstanceUID for d in study.datasets}) == 32
    assert len({d.SeriesInstanceUID for d in study.datasets}) == 1
    assert [d.InstanceNumber for d in study.datasets] == list(range(1, 33))
    again = ct_study("phantom/ct/1", 3, options=OPTIONS)
    assert [d.PixelData for d in again.datasets] == [d.PixelData for d in study.datasets]
    other = ct_study("phantom/ct/1", 3, options=OPTIONS, seed="other")
    assert other.study_instance_uid != study.study_instance_uid


def test_masks_file_round_trips_and_is_byte_stable(study: SynthStudy, tmp_path: Path) -> None:
    uids = [str(d.SOPInstanceUID) for d in study.datasets]
    save_masks(tmp_path / "a.npz", study.masks, uids, study.masks[0].shape)
    save_masks(tmp_path / "b.npz", study.masks, uids, study.masks[0].shape)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz") as saved:
        assert np.array_equal(saved["masks"], np.stack(study.masks))
        assert list(saved["sop_instance_uids"]) == uids


def test_lesions_that_cannot_fit_are_refused() -> None:
    tiny = CtOptions(size=32, slices=8, slice_thickness_mm=5.0, fov_mm=400.0)
    with pytest.raises(ValueError, match="do not fit"):
        ct_study("phantom/ct/0", 2, options=tiny)
    assert ct_study("phantom/ct/0", 0, options=tiny).lesions == []


def test_measurements_are_named_as_the_sr_writer_codes_them(study: SynthStudy) -> None:
    from radpilot.results.coding import measurement_concept, unit_concept

    measured = measure_mask(study.masks[0], spacing_from_datasets(study.datasets))
    named = measured.named_values()
    assert [(n, u) for n, _, u in named] == [("Volume", "mL"), ("Long Axis", "mm")]
    assert [v for _, v, _ in named] == [measured.volume_ml, measured.longest_diameter_mm]
    for name, _, unit in named:
        assert measurement_concept(name).scheme_designator == "SCT"
        assert unit_concept(unit).value == unit


def test_feret_diameter_of_simple_shapes() -> None:
    assert feret_diameter_mm(np.ones((1, 1), dtype=bool), 1.0, 1.0) == 0.0
    assert feret_diameter_mm(np.ones((3, 5), dtype=bool), 2.0, 1.0) == pytest.approx(
        math.hypot(4, 4)
    )
    assert feret_diameter_mm(np.zeros((4, 4), dtype=bool), 1.0, 1.0) == 0.0


@settings(max_examples=25, deadline=None)
@given(
    a=st.floats(4.0, 25.0),
    b=st.floats(4.0, 25.0),
    c=st.floats(6.0, 25.0),
    angle=st.floats(0.0, 180.0),
    pixel=st.floats(0.4, 1.5),
    thickness=st.floats(0.5, 2.0),
    offset=st.tuples(st.floats(-0.5, 0.5), st.floats(-0.5, 0.5), st.floats(-0.5, 0.5)),
)
def test_mask_measurements_match_the_analytic_truth(
    a: float,
    b: float,
    c: float,
    angle: float,
    pixel: float,
    thickness: float,
    offset: tuple[float, float, float],
) -> None:
    reach = max(a, b, c)
    geometry = CtGeometry(
        rows=int(2 * reach / pixel) + 6,
        columns=int(2 * reach / pixel) + 6,
        slices=int(2 * c / thickness) + 6,
        spacing_mm=pixel,
        thickness_mm=thickness,
    )
    centre = (offset[0] * pixel, offset[1] * pixel, offset[2] * thickness)
    lesion = Lesion(centre, (a, b, c), angle, 80.0)
    mask = lesion.mask(geometry)
    measured = measure_mask(mask, geometry.voxel_spacing)
    # Volume: only voxels the surface cuts can be wrong; they lie within half a voxel
    # diagonal of the surface, whose area is below that of the sphere of radius `reach`.
    half_diagonal = 0.5 * math.sqrt(2 * pixel**2 + thickness**2)
    assert (
        abs(measured.volume_ml - lesion.volume_ml) * 1000 <= 4 * math.pi * reach**2 * half_diagonal
    )
    # Diameter: between pixel centres inside, so each end falls short by less than a
    # pixel; the slice nearest the widest section is at most half a slice from it.
    widest = lesion.longest_axial_diameter_mm * math.sqrt(1 - (0.5 * thickness / c) ** 2)
    assert widest - 2 * pixel <= measured.longest_diameter_mm
    assert measured.longest_diameter_mm <= lesion.longest_axial_diameter_mm
    largest = measure_mask(mask, geometry.voxel_spacing, DiameterRule.LARGEST_AREA_SLICE)
    assert largest.longest_diameter_mm <= measured.longest_diameter_mm
    assert largest.longest_diameter_mm >= widest - 2 * pixel
