"""``radpilot validate`` for a detection model: its boxes against reference boxes (FROC)."""

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
from radpilot.models.prediction import Box
from radpilot.store import Database
from radpilot.store.models import Instance, Series, Study
from radpilot.validation.cases import Exclusion, ValidationDataError
from radpilot.validation.detection import RefBox, evaluate_detection, read_reference_boxes
from radpilot.validation.detection_report import build_detection_report
from radpilot.validation.usecase import UseCase

__all__ = ["validate_detection"]


def _studies(db: Database, uids: set[str]) -> tuple[dict[str, int], set[str]]:
    """Study UID -> primary key of the studies holding ``uids``, and the UIDs found."""
    with db.session() as session:
        rows = session.execute(
            select(Instance.sop_instance_uid, Study.study_instance_uid, Study.id)
            .join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id)
            .where(Instance.sop_instance_uid.in_(sorted(uids)))
        ).all()
    return {study: pk for _, study, pk in rows}, {sop for sop, _, _ in rows}


def _files(db: Database, study_pk: int, modalities: set[str]) -> list[str]:
    with db.session() as session:
        rows = session.execute(
            select(Instance.file_path, Series.modality)
            .join(Series, Instance.series_pk == Series.id)
            .where(Series.study_pk == study_pk)
            .order_by(Series.id, Instance.instance_number, Instance.id)
        ).all()
    return [path for path, modality in rows
            if not modalities or (modality or "").upper() in modalities]  # fmt: skip


def validate_detection(
    db: Database, archive: Path, package: ModelPackage, reference: Path | None,
    unsupported: list[str], finding: str | None, use_case: UseCase | None,
    model: dict[str, str], bootstrap: int, seed: int,
) -> tuple[dict[str, Any], int, int]:  # fmt: skip
    """The report, the images evaluated and the rows or studies excluded."""
    if unsupported:
        raise typer.BadParameter(
            f"{', '.join(unsupported)}: not available for detection models; give "
            "--reference-boxes with the reference boxes"
        )
    if reference is None:
        raise typer.BadParameter(
            "a detection model is validated against reference boxes: --reference-boxes "
            "FILE.csv (sop_instance_uid, label, x0, y0, x1, y1 in pixels; frame optional)"
        )
    try:
        boxes, excluded = read_reference_boxes(reference)
    except ValidationDataError as exc:
        fail(f"{reference.name}: {exc}")
    studies, found = _studies(db, {uid for uid, _ in boxes})
    for uid, frame in boxes:
        if uid not in found:
            excluded.append(Exclusion(f"{uid}#{frame}", "image not in this installation"))
    manifest = package.manifest
    modalities = {m.upper() for m in manifest.applies_to.modalities}
    loaded = load_model(package, explain=False)
    images: list[tuple[list[Box], list[RefBox]]] = []
    for study_uid, pk in sorted(studies.items()):
        datasets = [pydicom.dcmread(archive / f) for f in _files(db, pk, modalities)]
        try:
            prediction = loaded.predict(datasets)
        except RadpilotError as exc:
            excluded.append(Exclusion(study_uid, f"the model failed: {exc}"))
            continue
        for image in prediction.images:
            key = (image.sop_instance_uid, image.frame)
            detections = [b for b in prediction.boxes
                          if (b.image.sop_instance_uid, b.image.frame) == key]  # fmt: skip
            images.append((detections, boxes.get(key, [])))
    if not images:
        fail(f"no study of {reference.name} could be evaluated ({len(excluded)} excluded)")
    labels = [label for label in manifest.output.labels if label.lower() != "background"]
    result = evaluate_detection(images, labels, bootstrap=bootstrap, seed=seed)
    with_lesions = [k for k, v in result["labels"].items() if v.get("lesions")]
    chosen = (finding or (use_case.finding if use_case else None)
              or (with_lesions[0] if with_lesions else labels[0])).lower()  # fmt: skip
    report = build_detection_report(
        result, excluded, model=model, source=f"reference boxes in {reference.name}",
        finding=chosen, use_case=use_case,
    )  # fmt: skip
    return report, len(images), len(excluded)
