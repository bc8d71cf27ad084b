"""The cases of a validation run from this installation: a label file matched to indexed
studies, the model run on each study's images, one row per case.

Labels are read with the same parser as ``radpilot labels import`` (``docs/labels.md``).
Several reads of one study are adjudicated by majority over readers (each reader's
latest read; a tie leaves the study out). Each study's instances of the modalities the
model applies to are read from the archive and predicted; the score is that of the
finding. Rows that cannot be used — a malformed row, a row matching no study or several,
a tie, a study without a suitable image, a model failure — become exclusions with the
reason. The patient key is the index's patient row, so no identifier is copied out.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from sqlalchemy import select
from sqlalchemy.orm import Session

from radpilot.core.errors import ModelError
from radpilot.data.adjudication import latest_reads, majority_vote
from radpilot.data.labels_csv import RowError, parse_row, read_table
from radpilot.data.labels_match import RowIssue, match_rows
from radpilot.models.inference import LoadedModel
from radpilot.store import Database
from radpilot.store.models import Instance, Series, Study
from radpilot.validation.cases import Exclusion
from radpilot.validation.subgroups import age_band

__all__ = ["LabelledStudy", "labelled_studies", "score_studies"]


@dataclass
class LabelledStudy:
    """A study with its adjudicated label, the attributes for subgroups and its images."""

    pk: int
    study_instance_uid: str
    patient_key: str
    label: int
    attributes: dict[str, str]
    files: list[str]
    reads: dict[str, int]  # each reader's latest read


def _study(
    session: Session, pk: int, modalities: set[str]
) -> tuple[Study, dict[str, str], list[str]]:
    study = session.get(Study, pk)
    assert study is not None  # matched a moment ago in the same session
    series = list(session.scalars(select(Series).where(Series.study_pk == pk)))
    chosen = [s for s in series if not modalities or (s.modality or "").upper() in modalities]
    first = chosen[0] if chosen else (series[0] if series else None)
    attributes = {
        "modality": (first.modality if first else None) or "",
        "manufacturer": (first.manufacturer if first else None) or "",
        "scanner model": (first.manufacturer_model_name if first else None) or "",
        "site": study.institution_name or ((first.institution_name if first else None) or ""),
        "view": (first.view_position if first else None) or "",
        "body part": (first.body_part_examined if first else None) or "",
        "sex": study.patient.sex or "",
        "age band": age_band(study.patient_age or ""),
    }
    files = list(
        session.scalars(
            select(Instance.file_path)
            .where(Instance.series_pk.in_([s.id for s in chosen]))
            .order_by(Instance.series_pk, Instance.instance_number, Instance.id)
        )
    ) if chosen else []  # fmt: skip
    return study, attributes, files


def labelled_studies(
    db: Database, labels: Path, finding: str, modalities: list[str]
) -> tuple[list[LabelledStudy], list[Exclusion]]:
    """The label file's studies in this installation, adjudicated; and what was left out.

    Raises
    ------
    radpilot.data.labels_csv.LabelFileError
        If the file as a whole cannot be read.
    """
    table = read_table(labels)
    parsed, excluded = [], []
    for raw in table.rows:
        try:
            parsed.append(parse_row(raw, default_finding=finding, default_reader="reference",
                                    zone=dt.UTC, attributes=table.attributes))  # fmt: skip
        except RowError as exc:
            excluded.append(Exclusion(f"row {raw.number}", f"label row refused: {exc}"))
    wanted = [p for p in parsed if p.finding == finding]
    for p in parsed:
        if p.finding != finding:
            excluded.append(Exclusion(f"row {p.row}", f"read of another finding ({p.finding})"))
    studies: list[LabelledStudy] = []
    with db.session() as session:
        issues: list[RowIssue] = []
        matched = match_rows(session, wanted, issues)
        excluded += [Exclusion(f"row {i.row}", f"{i.kind}: {i.reason}") for i in issues]
        reads: dict[int, list[tuple[str, dt.datetime | None, int]]] = defaultdict(list)
        extra: dict[int, dict[str, str]] = defaultdict(dict)
        for row, pk in matched:
            reads[pk].append((row.reader, row.read_at, row.value))
            extra[pk].update(row.attributes)
        wanted_modalities = {m.upper() for m in modalities}
        for pk, study_reads in reads.items():
            study, attributes, files = _study(session, pk, wanted_modalities)
            latest = latest_reads(study_reads)
            label = majority_vote(latest.values())
            if label is None:
                excluded.append(Exclusion(study.study_instance_uid, "tie between readers"))
                continue
            patient = f"patient-{study.patient_pk}"
            studies.append(
                LabelledStudy(
                    pk,
                    study.study_instance_uid,
                    patient,
                    label,
                    attributes | extra[pk],
                    files,
                    latest,
                )
            )
    return studies, excluded


def score_studies(
    model: LoadedModel, studies: list[LabelledStudy], archive: Path, finding: str
) -> Iterator[dict[str, Any] | Exclusion]:
    """One case row (or the exclusion) per study, running ``model`` on its images."""
    for study in studies:
        if not study.files:
            yield Exclusion(study.study_instance_uid, "no image of a modality the model reads")
            continue
        try:
            datasets = [pydicom.dcmread(archive / path) for path in study.files]
            prediction = model.predict(datasets, explain=False)
        except (ModelError, OSError, ValueError) as exc:
            yield Exclusion(study.study_instance_uid, f"model failed: {str(exc)[:200]}")
            continue
        scores = [f.score for f in prediction.findings if f.label == finding]
        if not scores:
            yield Exclusion(study.study_instance_uid, f"the model reported no {finding} score")
            continue
        yield {
            "case_id": study.study_instance_uid,
            "patient_id": study.patient_key,
            "score": max(scores),
            "label": study.label,
            **study.attributes,
        }
