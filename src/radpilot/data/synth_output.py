"""Writing synthetic studies to a folder, with the manifest that records their truth.

Layout under the output folder::

    pneumoniamnist-test-17.dcm      one file per radiograph study
    ct-0003/0001.dcm ...            one folder per CT study, a file per slice
    truth/ct-0003.npz               CT lesion masks (lesion, slice, row, column) + slice UIDs
    labels.csv                      study_instance_uid,label,reader,source
    manifest.csv                    one row per study: truth, perturbations, header values

The masks stay out of the DICOM tree on purpose: a SEG of the truth sent along with the
images would reach PACS and the pipeline as if it were a result.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

from radpilot.data.synth_common import SynthKind, SynthStudy
from radpilot.data.synth_ct import save_masks

__all__ = ["MANIFEST_COLUMNS", "manifest_row", "write_labels", "write_manifest", "write_study"]

MANIFEST_COLUMNS = (
    "study_instance_uid",
    "kind",
    "source",
    "modality",
    "path",
    "instances",
    "label",
    "lesion_count",
    "lesions",  # JSON: one object per lesion (centre, radii, HU, analytic and mask sizes)
    "mask_file",
    "perturbations",  # JSON: [{"name": ..., "params": {...}}, ...] in the order applied
    "drift",
    "manufacturer",
    "model",
    "software_versions",
    "station_name",
    "institution",
    "protocol_name",
    "study_description",
    "series_description",
    "body_part",
    "view_position",
    "patient_id",
    "patient_sex",
    "patient_age",
    "patient_birth_date",
    "study_date",
    "kvp",
    "photometric",
    "burned_in_annotation",
    "window_center",
    "window_width",
    "rows",
    "columns",
    "pixel_spacing_mm",
    "slice_thickness_mm",
)


def write_study(study: SynthStudy, folder: Path, name: str) -> tuple[str, str]:
    """Save ``study`` under ``folder`` as ``name``; its relative path and mask file.

    Raises
    ------
    OSError
        If a file cannot be written.
    """
    if study.kind is SynthKind.RADIOGRAPH:
        study.datasets[0].save_as(folder / f"{name}.dcm", enforce_file_format=True)
        return f"{name}.dcm", ""
    series = folder / name
    series.mkdir(parents=True, exist_ok=True)
    for index, dataset in enumerate(study.datasets, start=1):
        dataset.save_as(series / f"{index:04d}.dcm", enforce_file_format=True)
    mask_file = f"truth/{name}.npz"
    first = study.datasets[0]
    shape = (len(study.datasets), int(first.Rows), int(first.Columns))
    uids = [str(d.SOPInstanceUID) for d in study.datasets]
    save_masks(folder / mask_file, study.masks, uids, shape)
    return f"{name}/", mask_file


def manifest_row(study: SynthStudy, path: str, mask_file: str) -> dict[str, str]:
    """The manifest row of ``study``, all values as written into its files."""
    first = study.datasets[0]
    header = study.header.manifest_fields()
    row = {
        "study_instance_uid": study.study_instance_uid,
        "kind": study.kind.value,
        "source": study.source,
        "modality": str(first.Modality),
        "path": path,
        "instances": str(len(study.datasets)),
        "label": str(study.label),
        "lesion_count": str(len(study.lesions)) if study.kind is SynthKind.CT else "",
        "lesions": json.dumps(study.lesions) if study.kind is SynthKind.CT else "",
        "mask_file": mask_file,
        "perturbations": json.dumps(
            [{"name": a.name.value, "params": a.params} for a in study.applied]
        ),
        **header,
        "photometric": str(first.PhotometricInterpretation),
        "burned_in_annotation": str(first.BurnedInAnnotation),
        "window_center": str(first.WindowCenter),
        "window_width": str(first.WindowWidth),
        "rows": str(first.Rows),
        "columns": str(first.Columns),
        "pixel_spacing_mm": str(first.PixelSpacing[0]),
        "slice_thickness_mm": str(first.get("SliceThickness", "")),
    }
    return {column: row[column] for column in MANIFEST_COLUMNS}


def write_manifest(path: Path, rows: Iterable[dict[str, str]]) -> None:
    """Write ``manifest.csv`` (UTF-8, comma-separated, a header row).

    Raises
    ------
    OSError
        If the file cannot be written.
    """
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def write_labels(path: Path, manifest: Iterable[dict[str, str]]) -> None:
    """Write ``labels.csv`` from manifest rows, as ``radpilot labels import`` reads it.

    Raises
    ------
    OSError
        If the file cannot be written.
    """
    rows = ["study_instance_uid,label,reader,source"]
    rows += [f"{r['study_instance_uid']},{r['label']},reference,{r['source']}" for r in manifest]
    path.write_text("\n".join(rows) + "\n")
