"""Wrap real radiograph pixels as DICOM studies (demo, tests, benchmarks, stress tests).

PneumoniaMNIST's images are real paediatric chest radiographs at 28 x 28; a radiograph
study as a PACS would send it is a DX (or CR) image of some hundred pixels or more, 12 bits
stored in 16. :func:`radiograph_study` upsamples the real pixels (bilinear) to that size,
writes the header a chest radiograph carries (fixed, or drawn from
:mod:`radpilot.data.synth_headers`), and applies the perturbations asked for
(:mod:`radpilot.data.synth_perturb`). The result is honest about its origin: the source
data set and index are in ImageComments and the patient name starts with ``SYNTH^``.
CT phantoms with lesions are in :mod:`radpilot.data.synth_ct`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom import Dataset
from pydicom.uid import ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation

from radpilot.data.synth_common import (
    SynthKind,
    SynthStudy,
    Variation,
    derivation,
    deterministic_uid,
    random_stream,
    study_key,
    write_common,
    write_file_meta,
)
from radpilot.data.synth_headers import (
    Patient,
    StudyHeader,
    SynthModality,
    default_header,
    dicom_age,
    draw_header,
)
from radpilot.data.synth_image import ImageState, Photometric
from radpilot.data.synth_perturb import apply_perturbations

__all__ = [
    "RadiographOptions",
    "SynthCase",
    "SynthStudy",
    "Variation",
    "choose_cases",
    "deterministic_uid",
    "pneumoniamnist_cases",
    "radiograph",
    "radiograph_study",
]

_DEFAULT_SPACING_MM = 0.35  # without header variety, as earlier versions wrote
_MAX_STORED = 4095


@dataclass(frozen=True)
class SynthCase:
    """One source image and who it pretends to belong to."""

    image: npt.NDArray[np.uint8]
    label: int
    source: str  # e.g. "pneumoniamnist/test/17"
    patient_id: str
    age_years: int
    sex: str


@dataclass(frozen=True)
class RadiographOptions:
    """Size and modality of a synthetic radiograph.

    Raises
    ------
    ValueError
        If ``modality`` is not CR or DX, or ``size`` is below 8.
    """

    size: int = 512
    modality: SynthModality = SynthModality.DX

    def __post_init__(self) -> None:
        modality = SynthModality(self.modality)
        if modality is SynthModality.CT:
            raise ValueError("a radiograph is CR or DX; for CT use radpilot.data.synth_ct")
        object.__setattr__(self, "modality", modality)
        if self.size < 8:
            raise ValueError(f"size must be at least 8 pixels, not {self.size}")


def _upsample(image: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.uint16]:
    rows, cols = image.shape
    y = np.linspace(0, rows - 1, size)
    x = np.linspace(0, cols - 1, size)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, rows - 1), np.minimum(x0 + 1, cols - 1)
    wy, wx = (y - y0)[:, None], (x - x0)[None, :]
    img = image.astype(np.float64)
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    values = (top * (1 - wy) + bottom * wy) * (4095.0 / 255.0)
    upsampled: npt.NDArray[np.uint16] = np.clip(np.rint(values), 0, 4095).astype(np.uint16)
    return upsampled


def _header(
    case: SynthCase,
    modality: SynthModality,
    variation: Variation,
    seed: str,
    key: tuple[str, ...],
) -> StudyHeader:
    if variation.vary_headers:
        # drawn from (seed, source) only: a perturbed copy is the same patient and visit
        patient_id = "SYN" + deterministic_uid(seed, case.source, "patient")[-8:]
        rng = random_stream(seed, case.source, "header")
        return draw_header(modality, rng, patient_id, drift=variation.drift)
    study_date = dt.date(2026, 1, 1) + dt.timedelta(days=int(deterministic_uid(*key)[-3:]) % 300)
    birth = dt.date(study_date.year - case.age_years, 1, 1)
    patient = Patient(case.patient_id, case.sex, birth, dicom_age(birth, study_date))
    drift_rng = random_stream(*key, "drift")
    return default_header(modality, patient, study_date, drift=variation.drift, rng=drift_rng)


def radiograph_study(
    case: SynthCase,
    *,
    options: RadiographOptions | None = None,
    variation: Variation | None = None,
    seed: str = "radpilot",
) -> SynthStudy:
    """A one-image chest radiograph study from ``case``, with its header and perturbations.

    UIDs derive from ``seed``, the case's source and the options that differ from the
    defaults, so the same call gives the same bytes and a variant gets its own UIDs.

    Raises
    ------
    ValueError
        If a perturbation value is out of range or does not apply to a radiograph.
    """
    options = options or RadiographOptions()
    variation = variation or Variation()
    modality = options.modality
    key = study_key(seed, case.source, variation.variant(modality.value, "DX"))
    header = _header(case, modality, variation, seed, key)
    spacing = round(header.field_mm / options.size, 6) if header.field_mm else _DEFAULT_SPACING_MM
    state = ImageState(
        _upsample(case.image, options.size).astype(np.float64),
        spacing_mm=spacing,
        window_center=2048,
        window_width=4096,
    )
    rng = random_stream(*key, "perturb")
    state, applied = apply_perturbations(state, variation.perturbations, rng)
    ds = Dataset()
    ds.SOPClassUID = (
        ComputedRadiographyImageStorage
        if modality is SynthModality.CR
        else DigitalXRayImageStorageForPresentation
    )
    ds.SOPInstanceUID = deterministic_uid(*key, "instance")
    write_common(ds, header, key, modality.value)
    ds.InstanceNumber = 1
    ds.ViewPosition = header.protocol.view
    ds.PatientOrientation = ["L", "F"]
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.ImageComments = f"synthetic study from {case.source} (label {case.label})"
    if applied:
        ds.DerivationDescription = derivation(applied, "upsampled from 28 px")
    ds.BurnedInAnnotation = "YES" if state.burned_in else "NO"
    ds.KVP = f"{header.kvp:g}"
    if header.exposure > 0:
        ds.ExposureInuAs = round(header.exposure * 1000)
    ds.ImagerPixelSpacing = ds.PixelSpacing = [state.spacing_mm, state.spacing_mm]
    if modality is SynthModality.DX:
        _dx_attributes(ds, state, key)
    _pixels(ds, state)
    write_file_meta(ds)
    return SynthStudy(case.source, SynthKind.RADIOGRAPH, case.label, header, [ds], applied)


_VIEWS = {"PA": ("399348003", "postero-anterior"), "AP": ("399182000", "antero-posterior")}


def _dx_attributes(ds: Dataset, state: ImageState, key: tuple[str, ...]) -> None:
    """Attributes of the DX Image, DX Detector and DX Anatomy Imaged modules."""
    ds.FrameOfReferenceUID = deterministic_uid(*key, "frame")
    ds.PositionReferenceIndicator = ""
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageLaterality = "U"
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator = "43799004", "SCT"
    region.CodeMeaning = "Chest"
    ds.AnatomicRegionSequence = [region]
    if ds.ViewPosition in _VIEWS:
        view = Dataset()
        view.CodeValue, view.CodeMeaning = _VIEWS[ds.ViewPosition]
        view.CodingSchemeDesignator = "SCT"
        ds.ViewCodeSequence = [view]
    ds.PixelIntensityRelationship = "LIN"
    # Sign +1: lower values mean less x-ray intensity at the detector. In MONOCHROME2
    # bone (little intensity) is bright, i.e. high values mean less intensity: -1.
    monochrome1 = state.photometric is Photometric.MONOCHROME1
    ds.PixelIntensityRelationshipSign = 1 if monochrome1 else -1
    ds.PresentationLUTShape = "INVERSE" if monochrome1 else "IDENTITY"
    ds.DetectorType = ""
    ds.PositionerType = ""
    ds.AcquisitionContextSequence = []


def _pixels(ds: Dataset, state: ImageState) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = state.photometric.value
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.WindowCenter, ds.WindowWidth = f"{state.window_center:g}", f"{state.window_width:g}"
    ds.LossyImageCompression = "00"
    pixels = np.clip(np.rint(state.pixels), 0, _MAX_STORED).astype(np.uint16)
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.tobytes()


def radiograph(case: SynthCase, *, size: int = 512, seed: str = "radpilot") -> Dataset:
    """A DX For Presentation chest radiograph study (one image) from ``case``.

    UIDs are derived from ``seed`` and the case's source, so the same call gives the
    same bytes. :func:`radiograph_study` offers CR, header variety and perturbations.
    """
    return radiograph_study(case, options=RadiographOptions(size=size), seed=seed).datasets[0]


def pneumoniamnist_cases(
    npz: Path, split: str = "test", *, count: int | None = None, start: int = 0
) -> Iterator[SynthCase]:
    """Cases from PneumoniaMNIST's ``split`` (train, val or test), in file order.

    Patients are invented deterministically (one per image): children aged 1-10, sex
    alternating by a hash of the index, since the source images come without them.

    Raises
    ------
    FileNotFoundError
        If ``npz`` is missing.
    KeyError
        If ``split`` is not in the archive.
    """
    with np.load(npz) as archive:
        images = archive[f"{split}_images"]
        labels = archive[f"{split}_labels"].reshape(-1)
    stop = len(images) if count is None else min(len(images), start + count)
    for index in range(start, stop):
        h = int(hashlib.sha256(f"{split}/{index}".encode()).hexdigest()[:8], 16)
        yield SynthCase(
            image=np.asarray(images[index], dtype=np.uint8),
            label=int(labels[index]),
            source=f"pneumoniamnist/{split}/{index}",
            patient_id=f"PNM{split[:2].upper()}{index:05d}",
            age_years=1 + h % 10,
            sex="F" if h % 2 else "M",
        )


def choose_cases(
    npz: Path,
    split: str,
    count: int,
    positive_rate: float | None = None,
    draw: str | None = None,
) -> list[SynthCase]:
    """``count`` cases of ``split``: the first ones, or the first positives and negatives
    at ``positive_rate``, back in file order. With ``draw`` (a seed), a random draw
    without replacement instead of the first ones, the same for the same seed.

    Raises
    ------
    ValueError
        If the split has too few positives or negatives for that mix.
    """
    cases = list(pneumoniamnist_cases(npz, split))
    if draw is not None:  # a reproducible sample, not a secret
        random.Random(draw).shuffle(cases)  # noqa: S311
    if positive_rate is None:
        return sorted(cases[:count], key=lambda c: int(c.source.rsplit("/", 1)[1]))
    positives = [c for c in cases if c.label == 1]
    negatives = [c for c in cases if c.label == 0]
    wanted = round(count * positive_rate)
    if wanted > len(positives) or count - wanted > len(negatives):
        raise ValueError(f"the {split} split has too few cases for {count} at rate {positive_rate}")
    chosen = positives[:wanted] + negatives[: count - wanted]
    chosen.sort(key=lambda c: int(c.source.rsplit("/", 1)[1]))
    return chosen
