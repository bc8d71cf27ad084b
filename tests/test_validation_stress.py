"""Stress tests from real runs: the reference model on official test radiographs (as
DICOM) under the synth perturbations, through its own preprocessing."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.filebase import DicomBytesIO

from radpilot.data.synth import pneumoniamnist_cases, radiograph
from radpilot.data.synth_perturb import PerturbationName, PerturbationSpec
from radpilot.models.inference import load_model
from radpilot.models.package import ModelPackage
from radpilot.validation.stress import perturb_dataset, stress_curve
from tests.reference_helpers import NPZ, PACKAGE

pytestmark = pytest.mark.skipif(not NPZ.exists(), reason=f"PneumoniaMNIST not found at {NPZ}")
THRESHOLD = 0.513088


@pytest.fixture(scope="module")
def studies() -> tuple[list[list[pydicom.Dataset]], np.ndarray]:
    cases = list(pneumoniamnist_cases(NPZ, "test"))[::3]  # 208 studies
    return [[radiograph(c, size=64)] for c in cases], np.asarray([c.label for c in cases])


def test_perturbed_copies_are_valid_dicom_and_seeded() -> None:
    (case,) = list(pneumoniamnist_cases(NPZ, "test", count=1))
    ds = radiograph(case, size=64)
    inverted = perturb_dataset(ds, PerturbationSpec(PerturbationName.MONOCHROME1), "s")
    assert inverted.PhotometricInterpretation == "MONOCHROME1"
    assert np.array_equal(inverted.pixel_array, 4095 - ds.pixel_array.astype(int))
    noisy = perturb_dataset(ds, PerturbationSpec(PerturbationName.NOISE, "200"), "s")
    again = perturb_dataset(ds, PerturbationSpec(PerturbationName.NOISE, "200"), "s")
    assert noisy.PixelData == again.PixelData != ds.PixelData
    buffer = DicomBytesIO()
    noisy.save_as(buffer, enforce_file_format=True)
    back = pydicom.dcmread(DicomBytesIO(buffer.getvalue()))
    assert np.array_equal(back.pixel_array, noisy.pixel_array)
    assert ds.PixelData == radiograph(case, size=64).PixelData  # the original is untouched
    with pytest.raises(ValueError, match="noise sigma"):
        perturb_dataset(ds, PerturbationSpec(PerturbationName.NOISE, "5000"), "s")
    coarse = perturb_dataset(ds, PerturbationSpec(PerturbationName.RESOLUTION, "0.25"), "s")
    assert (coarse.Rows, coarse.Columns) == (16, 16) and coarse.pixel_array.shape == (16, 16)
    assert float(coarse.PixelSpacing[0]) == pytest.approx(4 * float(ds.PixelSpacing[0]))


def test_inversion_holds_and_strong_noise_and_blur_break(
    studies: tuple[list[list[pydicom.Dataset]], np.ndarray],
) -> None:
    data, labels = studies
    model = load_model(ModelPackage.open(PACKAGE), explain=False, threads=2)
    inverted = stress_curve(model, data, labels, "pneumonia", THRESHOLD,
                            PerturbationName.MONOCHROME1)  # fmt: skip
    # MONOCHROME1 is read as MONOCHROME1: the same images, the same scores
    assert inverted["breaks_at"] == {"auc": None, "sensitivity": None, "specificity": None}
    assert inverted["points"][0]["auc"]["value"] == pytest.approx(
        inverted["baseline"]["auc"]["value"], abs=1e-6
    )
    noise = stress_curve(model, data, labels, "pneumonia", THRESHOLD,
                         PerturbationName.NOISE, ["50", "800"])  # fmt: skip
    assert noise["breaks_at"]["auc"] in ("50", "800")
    assert noise["points"][1]["auc"]["value"] < noise["baseline"]["auc"]["low"]
    blur = stress_curve(model, data, labels, "pneumonia", THRESHOLD,
                        PerturbationName.BLUR, ["0.5", "8"])  # fmt: skip
    # a blurred chest reads as consolidated: the normal studies are called pneumonia
    assert blur["points"][-1]["specificity"]["value"] < 0.2
    assert blur["breaks_at"]["specificity"] in ("0.5", "8")
