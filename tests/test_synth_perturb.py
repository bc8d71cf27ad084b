"""Each perturbation changes the written pixels and header the way it says it does."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from pydicom import Dataset

from radpilot.data.synth import RadiographOptions, SynthCase, radiograph_study
from radpilot.data.synth_common import SynthStudy, Variation
from radpilot.data.synth_ct import CtOptions
from radpilot.data.synth_ct_series import ct_study
from radpilot.data.synth_ops import line_distance
from radpilot.data.synth_perturb import PerturbationName, PerturbationSpec
from tests.pipeline_helpers import cases

SMALL_CT = CtOptions(size=64, slices=16, slice_thickness_mm=5.0, fov_mm=200.0)


@pytest.fixture(scope="module")
def case() -> SynthCase:
    return cases(1, start=7)[0]


def _xray(case: SynthCase, *perturbations: str, size: int = 96) -> SynthStudy:
    specs = tuple(PerturbationSpec.parse(p) for p in perturbations)
    return radiograph_study(
        case, options=RadiographOptions(size=size), variation=Variation(perturbations=specs)
    )


def _ct(*perturbations: str, lesions: int = 0) -> SynthStudy:
    specs = tuple(PerturbationSpec.parse(p) for p in perturbations)
    return ct_study(
        "phantom/ct/7", lesions, options=SMALL_CT, variation=Variation(perturbations=specs)
    )


def _pixels(ds: Dataset) -> npt.NDArray[np.float64]:
    return np.asarray(ds.pixel_array, dtype=np.float64)


def _hu(study: SynthStudy) -> npt.NDArray[np.float64]:
    return np.stack(
        [_pixels(d) * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in study.datasets]
    )


def _soft_tissue(study: SynthStudy) -> npt.NDArray[np.float64]:
    """A flat region: the middle of the phantom's soft tissue (no lesions asked for)."""
    return _hu(study)[:, 26:38, 20:44]


def test_parse_names_values_and_refuse_unknown_names() -> None:
    assert PerturbationSpec.parse("blur=2") == PerturbationSpec(PerturbationName.BLUR, "2")
    assert PerturbationSpec.parse(" MONOCHROME1 ").value is None
    with pytest.raises(ValueError, match="use one of: noise, blur"):
        PerturbationSpec.parse("sharpen=3")


def test_noise_raises_the_spread_of_a_flat_region() -> None:
    clean, noisy = _soft_tissue(_ct()), _soft_tissue(_ct("noise=30"))
    assert 8 < clean.std() < 12  # the phantom's own full-dose noise, 10 HU
    assert noisy.std() == pytest.approx(np.hypot(10, 30), rel=0.1)


def test_low_dose_noise_grows_as_one_over_root_dose() -> None:
    study = _ct("low-dose=0.25")
    assert study.applied[0].params["added_sigma_hu"] == pytest.approx(10 * np.sqrt(3), abs=1e-3)
    assert _soft_tissue(study).std() == pytest.approx(10 / np.sqrt(0.25), rel=0.1)


def test_low_dose_radiograph_has_the_quantum_noise_of_its_photons(case: SynthCase) -> None:
    clean = _pixels(_xray(case).datasets[0])
    study = _xray(case, "low-dose=0.05")
    error = _pixels(study.datasets[0]) - clean
    photons = float(study.applied[0].params["photons"])
    for group in (clean < np.percentile(clean, 20), clean > np.percentile(clean, 80)):
        # MONOCHROME2: stored value / 4095 = attenuation a; counts ~ Poisson(N exp(-3a));
        # the log image's noise is 4095 / 3 / sqrt(counts): more where bone stops photons
        expected = 4095 / 3 / np.sqrt(photons * np.exp(-3 * clean[group] / 4095))
        assert error[group].std() == pytest.approx(np.sqrt((expected**2).mean()), rel=0.15)


def test_blur_removes_high_frequency_energy(case: SynthCase) -> None:
    def detail(image: npt.NDArray[np.float64]) -> float:
        return float((np.diff(image, axis=0) ** 2).sum() + (np.diff(image, axis=1) ** 2).sum())

    study = _xray(case, "blur=2")
    clean, blurred = _pixels(_xray(case).datasets[0]), _pixels(study.datasets[0])
    assert detail(blurred) < 0.5 * detail(clean)
    assert abs(blurred.mean() - clean.mean()) < 0.01 * clean.mean()  # blur keeps the level
    spacing = float(study.datasets[0].PixelSpacing[0])
    assert study.applied[0].params["sigma_px"] == pytest.approx(2 / spacing, rel=1e-3)


def test_contrast_scales_about_the_window_centre(case: SynthCase) -> None:
    clean = _pixels(_xray(case).datasets[0])
    study = _xray(case, "contrast=0.5")
    about = float(study.applied[0].params["about"])
    assert np.abs(_pixels(study.datasets[0]) - (about + 0.5 * (clean - about))).max() <= 0.5


def test_window_shift_moves_the_window_not_the_pixels(case: SynthCase) -> None:
    clean, shifted = _xray(case).datasets[0], _xray(case, "window-shift=-0.25").datasets[0]
    assert float(shifted.WindowCenter) == float(clean.WindowCenter) - 0.25 * float(
        clean.WindowWidth
    )
    assert shifted.WindowWidth == clean.WindowWidth and shifted.PixelData == clean.PixelData


def test_monochrome1_inverts_values_and_keeps_the_displayed_picture(case: SynthCase) -> None:
    clean, inverted = _xray(case).datasets[0], _xray(case, "monochrome1").datasets[0]
    assert inverted.PhotometricInterpretation == "MONOCHROME1"
    assert inverted.PresentationLUTShape == "INVERSE" and clean.PresentationLUTShape == "IDENTITY"
    assert inverted.PixelIntensityRelationshipSign == -clean.PixelIntensityRelationshipSign
    assert np.array_equal(_pixels(inverted), 4095 - _pixels(clean))
    assert float(inverted.WindowCenter) == 4095 - float(clean.WindowCenter)
    twice = _xray(case, "monochrome1", "monochrome1").datasets[0]
    assert twice.PixelData == clean.PixelData and twice.PhotometricInterpretation == "MONOCHROME2"
    with pytest.raises(ValueError, match="CT stays MONOCHROME2"):
        _ct("monochrome1")


def test_rotation_turns_the_image_about_its_centre(case: SynthCase) -> None:
    clean = _pixels(_xray(case).datasets[0])
    quarter = _pixels(_xray(case, "rotation=90").datasets[0])
    # counter-clockwise as displayed, as numpy's rot90 turns an array
    assert np.abs(quarter[1:-1, 1:-1] - np.rot90(clean)[1:-1, 1:-1]).max() <= 1
    tilted = _pixels(_xray(case, "rotation=20").datasets[0])
    assert tilted.shape == clean.shape
    assert tilted[0, 0] == tilted[-1, -1] == 0  # corners come from outside the field
    assert not np.array_equal(tilted[40:56, 40:56], clean[40:56, 40:56])


def test_crop_keeps_the_recorded_part(case: SynthCase) -> None:
    clean = _pixels(_xray(case).datasets[0])
    study = _xray(case, "crop=0.75")
    params, cropped = study.applied[0].params, _pixels(study.datasets[0])
    top, left = int(params["top"]), int(params["left"])
    assert cropped.shape == (72, 72)
    assert study.datasets[0].Rows == 72 and study.datasets[0].Columns == 72
    assert np.array_equal(cropped, clean[top : top + 72, left : left + 72])


def test_resolution_coarsens_the_matrix_over_the_same_field(case: SynthCase) -> None:
    clean = _xray(case).datasets[0]
    study = _xray(case, "resolution=0.5")
    coarse = study.datasets[0]
    assert (coarse.Rows, coarse.Columns) == (48, 48)
    assert float(coarse.PixelSpacing[0]) == pytest.approx(2 * float(clean.PixelSpacing[0]))
    assert float(coarse.Rows) * float(coarse.PixelSpacing[0]) == pytest.approx(
        float(clean.Rows) * float(clean.PixelSpacing[0])
    )  # the same field of view
    fine, low = _pixels(clean), _pixels(coarse)
    # each coarse pixel is close to the mean of the 2 x 2 block it covers (low-pass first)
    blocks = fine.reshape(48, 2, 48, 2).mean(axis=(1, 3))
    assert np.abs(low - blocks).mean() < 0.05 * fine.std()
    assert abs(low.mean() - fine.mean()) < 0.01 * fine.mean()
    assert study.applied[0].params == {"scale": 0.5, "rows": 48, "columns": 48}
    with pytest.raises(ValueError, match="radiographs"):
        _ct("resolution=0.5")


def test_burned_in_text_changes_only_its_box_and_says_so(case: SynthCase) -> None:
    clean = _xray(case).datasets[0]
    study = _xray(case, "burned-in-text=AP 12:30")
    marked, params = study.datasets[0], study.applied[0].params
    assert clean.BurnedInAnnotation == "NO" and marked.BurnedInAnnotation == "YES"
    box = np.zeros((96, 96), dtype=bool)
    box[int(params["top"]) : int(params["bottom"]), int(params["left"]) : int(params["right"])] = (
        True
    )
    changed = _pixels(marked) != _pixels(clean)
    assert changed[box].sum() >= 20 and not changed[~box].any()
    assert (_pixels(marked)[changed] == 4095).all()  # drawn white
    assert (
        params["text"] == "AP 12:30"
        and "burned-in-text(text=AP 12:30" in marked.DerivationDescription
    )
    with pytest.raises(ValueError, match="A-Z, 0-9"):
        _xray(case, "burned-in-text=naïve")


def test_metal_streaks_add_high_values_along_lines(case: SynthCase) -> None:
    study = _xray(case, "metal-streaks=3")
    params = study.applied[0].params
    wired = _pixels(study.datasets[0])
    row, column = float(params["row"]), float(params["column"])
    assert isinstance(params["angles"], list) and len(params["angles"]) == 3
    for angle in params["angles"]:
        on_line = line_distance((96, 96), row, column, float(angle)) <= 0.5
        near = (
            np.hypot(*np.meshgrid(np.arange(96) - row, np.arange(96) - column, indexing="ij")) < 10
        )
        assert (wired[on_line & near] == 4095).all()

    clean, streaked = _hu(_ct()), _ct("metal-streaks=4")
    hu, params = _hu(streaked), streaked.applied[0].params
    first, band = int(params["first_slice"]), int(params["slices"])
    assert hu.max() >= 2900 and clean.max() < 1000  # the metal itself
    assert np.array_equal(hu[:first], clean[:first]) and np.array_equal(
        hu[first + band :], clean[first + band :]
    )
    angle = float(params["angles"][0])
    on_line = line_distance((64, 64), float(params["row"]), float(params["column"]), angle) <= 0.5
    assert (hu[first][on_line] - clean[first][on_line]).mean() > 300


def test_values_out_of_range_say_what_is_allowed(case: SynthCase) -> None:
    with pytest.raises(ValueError, match=r"crop fraction must be between 0\.2 and 1"):
        _xray(case, "crop=0.1")
    with pytest.raises(ValueError, match="must be a number"):
        _xray(case, "noise=loud")
