"""CT phantom studies as CT Image Storage series (one axial series per study).

Stored values are HU + 1024 in 12 bits (RescaleIntercept -1024, as most scanners write
unsigned CT); slices run from foot to head with contiguous spacing. After a rotation or
crop perturbation, ImagePositionPatient and ImageOrientationPatient describe the moved
pixel grid, so every voxel keeps its place in patient coordinates and the truth (lesion
centres in mm) stays valid.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from pydicom import Dataset
from pydicom.uid import CTImageStorage

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
from radpilot.data.synth_ct import CtGeometry, CtOptions, build_phantom
from radpilot.data.synth_headers import (
    StudyHeader,
    SynthModality,
    default_header,
    draw_header,
    draw_patient,
)
from radpilot.data.synth_image import ImageState
from radpilot.data.synth_perturb import apply_perturbations

__all__ = ["ct_study"]


def _header(source: str, variation: Variation, seed: str) -> StudyHeader:
    patient_id = "SYN" + deterministic_uid(seed, source, "patient")[-8:]
    rng = random_stream(seed, source, "header")
    if variation.vary_headers:
        return draw_header(SynthModality.CT, rng, patient_id, drift=variation.drift)
    study_date = dt.date(2026, 1, 1) + dt.timedelta(days=int(rng.integers(0, 300)))
    patient = draw_patient(rng, patient_id, study_date)
    return default_header(SynthModality.CT, patient, study_date, drift=variation.drift, rng=rng)


def _position(state: ImageState, geometry: CtGeometry, z: float) -> tuple[list[float], list[float]]:
    """ImagePositionPatient and ImageOrientationPatient of the (moved) pixel grid."""
    a, b, t_row, c, d, t_col = state.grid
    x0, y0 = float(geometry.x()[0]), float(geometry.y()[0])
    spacing = geometry.spacing_mm
    position = [x0 + spacing * t_col, y0 + spacing * t_row, z]
    orientation = [d, b, 0.0, c, a, 0.0]
    return [round(v, 4) + 0.0 for v in position], [round(v, 6) + 0.0 for v in orientation]


def ct_study(
    source: str,
    lesion_count: int,
    *,
    options: CtOptions | None = None,
    variation: Variation | None = None,
    seed: str = "radpilot",
) -> SynthStudy:
    """A CT phantom study with ``lesion_count`` lesions, its masks and truth.

    The phantom (body, lesions, noise) derives from ``seed`` and ``source`` alone, so a
    perturbed or re-headed variant shows the same lesions; UIDs also depend on the
    variant.

    Raises
    ------
    ValueError
        If the lesions do not fit, or a perturbation value is out of range or does not
        apply to CT.
    """
    options = options or CtOptions()
    variation = variation or Variation()
    key = study_key(seed, source, variation.variant("CT", "CT"))
    header = _header(source, variation, seed)
    phantom_rng = random_stream(seed, source, "phantom", lesion_count)
    state, geometry, lesions = build_phantom(options, lesion_count, phantom_rng)
    state, applied = apply_perturbations(
        state, variation.perturbations, random_stream(*key, "perturb")
    )
    pixels = np.clip(np.rint(state.pixels), 0, state.max_value).astype(np.uint16)
    datasets = []
    for index, z in enumerate(geometry.z()):
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = deterministic_uid(*key, "instance", index)
        write_common(ds, header, key, "CT")
        ds.FrameOfReferenceUID = deterministic_uid(*key, "frame")
        ds.PositionReferenceIndicator = ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientPosition = "HFS"
        ds.InstanceNumber = index + 1
        ds.AcquisitionNumber = 1
        ds.ImagePositionPatient, ds.ImageOrientationPatient = _position(state, geometry, z)
        ds.SliceLocation = round(float(z), 4) + 0.0
        ds.SliceThickness = geometry.thickness_mm
        ds.PixelSpacing = [geometry.spacing_mm, geometry.spacing_mm]
        ds.KVP = f"{header.kvp:g}"
        ds.XRayTubeCurrent = round(header.exposure)
        ds.ConvolutionKernel = header.protocol.kernel or header.device.kernel
        ds.ImageComments = f"synthetic CT phantom {source} ({lesion_count} lesions)"
        if applied:
            ds.DerivationDescription = derivation(applied, "CT phantom")
        ds.BurnedInAnnotation = "YES" if state.burned_in else "NO"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = state.photometric.value
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = f"{state.intercept:g}", 1, "HU"
        ds.WindowCenter, ds.WindowWidth = f"{state.window_center:g}", f"{state.window_width:g}"
        ds.Rows, ds.Columns = pixels.shape[1:]
        ds.PixelData = pixels[index].tobytes()
        write_file_meta(ds)
        datasets.append(ds)
    masks = list(state.masks)
    truth = [lesion.truth(mask, geometry) for lesion, mask in zip(lesions, masks, strict=True)]
    label = int(lesion_count > 0)
    return SynthStudy(source, SynthKind.CT, label, header, datasets, applied, truth, masks)
