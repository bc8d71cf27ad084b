"""``radpilot validate`` for a segmentation model: its masks against reference DICOM SEGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
import typer
from sqlalchemy import select

from radpilot.cli.context import fail
from radpilot.core.errors import RadpilotError
from radpilot.models.inference import load_model
from radpilot.models.package import ModelPackage
from radpilot.store import Database
from radpilot.store.models import Instance, Series
from radpilot.validation.cases import Exclusion
from radpilot.validation.segmentation import (
    Mask,
    compare_masks,
    read_references,
    spacing_of,
    summarise,
)
from radpilot.validation.segmentation_report import build_segmentation_report
from radpilot.validation.usecase import UseCase

__all__ = ["validate_segmentation"]


def _series_files(db: Database, series_uid: str) -> list[str]:
    with db.session() as session:
        return list(
            session.scalars(
                select(Instance.file_path)
                .join(Series, Instance.series_pk == Series.id)
                .where(Series.series_instance_uid == series_uid)
                .order_by(Instance.instance_number, Instance.id)
            )
        )


def validate_segmentation(
    db: Database, archive: Path, package: ModelPackage, reference_dir: Path | None,
    unsupported: list[str], finding: str | None, use_case: UseCase | None,
    model: dict[str, str], bootstrap: int, seed: int,
) -> tuple[dict[str, Any], int, int]:  # fmt: skip
    """The report, the cases compared and the references excluded.

    Each DICOM SEG under ``reference_dir`` names a series radpilot holds; the model runs
    on that series and its masks are compared with the reference's segments of the same
    labels.
    """
    if unsupported:
        raise typer.BadParameter(
            f"{', '.join(unsupported)}: not available for segmentation models; give "
            "--reference-seg with the reference DICOM SEG files"
        )
    if reference_dir is None:
        raise typer.BadParameter(
            "a segmentation model is validated against reference segmentations: "
            "--reference-seg DIR (DICOM SEG files over series in this installation)"
        )
    references, excluded = read_references(reference_dir)
    labels = list(package.manifest.output.labels)
    loaded = load_model(package, explain=False)
    per_label: dict[str, list[tuple[str, Mask, Mask, tuple[float, ...]]]] = {}
    for ref in references:
        files = _series_files(db, ref.series_instance_uid)
        if not files:
            excluded.append(Exclusion(ref.name, "the referenced series is not in radpilot"))
            continue
        datasets = [pydicom.dcmread(archive / f) for f in files]
        try:
            prediction = loaded.predict(datasets)
        except RadpilotError as exc:
            excluded.append(Exclusion(ref.name, f"the model failed: {exc}"))
            continue
        uids = [image.sop_instance_uid for image in prediction.images]
        by_uid = {str(ds.SOPInstanceUID): ds for ds in datasets}
        ordered = [by_uid[uid] for uid in uids]
        shape = (int(ordered[0].Rows), int(ordered[0].Columns))
        pairs, why = compare_masks(prediction.masks, uids, ref, labels, shape)
        if why is not None:
            excluded.append(Exclusion(ref.name, why))
            continue
        spacing = spacing_of(ordered)
        for label, (predicted, reference) in pairs.items():
            per_label.setdefault(label, []).append(
                (ref.study_instance_uid, predicted, reference, spacing)
            )
    if not per_label:
        fail(
            f"no reference in {reference_dir} could be compared "
            f"({len(excluded)} excluded; e.g. {excluded[0].reason if excluded else 'none found'})"
        )
    chosen = finding or (use_case.finding if use_case else None) or next(iter(per_label))
    summary = summarise(per_label, bootstrap=bootstrap, seed=seed)
    report = build_segmentation_report(
        summary, excluded, model=model, source=f"reference segmentations in {reference_dir.name}",
        finding=chosen, use_case=use_case,
    )  # fmt: skip
    compared = max(len(items) for items in per_label.values())
    return report, compared, len(excluded)
