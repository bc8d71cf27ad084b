"""``radpilot validate`` for a classification model: its cases, stress curves and readers."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import typer
from pydicom.dataset import Dataset

from radpilot.cli.context import fail
from radpilot.data.synth_perturb import PerturbationName
from radpilot.models.inference import load_model
from radpilot.models.manifest import Manifest
from radpilot.models.package import ModelPackage
from radpilot.store import Database
from radpilot.validation.cases import CaseTable, Exclusion, build_cases
from radpilot.validation.cohort import LabelledStudy, labelled_studies, score_studies
from radpilot.validation.stress import stress_curve

__all__ = ["collect", "finding_of", "reads_by_reader", "stress_curves"]


def finding_of(manifest: Manifest, asked: str | None) -> tuple[str, dict[str, float], str]:
    """The finding, the package's thresholds for it, and the default point's name."""
    points = manifest.output.operating_points
    finding = asked or (
        manifest.output.critical_findings[0]
        if manifest.output.critical_findings
        else (points[0].label if points else manifest.output.labels[-1])
    )
    thresholds = {p.name: p.threshold for p in points if p.label == finding}
    if not thresholds:
        fail(f"the package has no operating point for {finding!r}; name one with --finding")
    default = manifest.output.default_operating_point or next(iter(thresholds))
    return finding, thresholds, default if default in thresholds else next(iter(thresholds))


def _results_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def collect(
    db: Database, archive: Path, package: ModelPackage, finding: str,
    labels: Path | None, results: Path | None,
) -> tuple[CaseTable, str, list[LabelledStudy]]:  # fmt: skip
    """The cases of one labelled set, where they came from in words, and its studies
    (none for a results file)."""
    excluded: list[Exclusion] = []
    studies: list[LabelledStudy] = []
    if results is not None:
        rows, source = _results_rows(results), f"results file {results.name}"
    else:
        assert labels is not None
        modalities = list(package.manifest.applies_to.modalities)
        studies, excluded = labelled_studies(db, labels, finding, modalities)
        loaded = load_model(package, explain=False)
        rows = []
        for row in score_studies(loaded, studies, archive, finding):
            if isinstance(row, Exclusion):
                excluded.append(row)
            else:
                rows.append(row)
        source = f"studies in this installation labelled by {labels.name}"
    table = build_cases(rows, positive_labels=[finding])
    table.excluded = excluded + table.excluded
    return table, source, studies


def stress_curves(
    package: ModelPackage, studies: list[LabelledStudy], table: CaseTable, finding: str,
    threshold: float, names: str, count: int, archive: Path,
) -> list[dict[str, Any]]:  # fmt: skip
    """Stress curves on up to ``count`` of the kept studies (evenly spaced)."""
    try:
        perturbations = [PerturbationName(n.strip()) for n in names.split(",") if n.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"--stress: {exc}") from None
    label_of = dict(zip(table.case_ids, table.labels.tolist(), strict=True))
    kept = [s for s in studies if s.study_instance_uid in label_of and s.files]
    chosen = kept[:: max(1, len(kept) // count)][:count]
    datasets: list[list[Dataset]] = [
        [pydicom.dcmread(archive / f) for f in s.files] for s in chosen
    ]
    labels = np.asarray([label_of[s.study_instance_uid] for s in chosen], dtype=np.int64)
    model = load_model(package, explain=False)
    return [stress_curve(model, datasets, labels, finding, threshold, p) for p in perturbations]


def reads_by_reader(studies: list[LabelledStudy], table: CaseTable) -> dict[str, dict[str, int]]:
    """reader -> case -> label, over the cases kept."""
    kept = set(table.case_ids)
    readers: dict[str, dict[str, int]] = {}
    for study in studies:
        if study.study_instance_uid in kept:
            for reader, value in study.reads.items():
                readers.setdefault(reader, {})[study.study_instance_uid] = value
    return readers
