"""Training data from this installation's index: studies, their reads, their images.

**Adjudication** (several reads of a study): each reader's *latest* read of the finding
(by read time; a read without a time counts as the oldest) is one vote; the label is the
majority of the votes; a tie leaves the study out (counted as ``tie between readers``).
``data.cohort.readers`` restricts the vote to named readers (e.g. the reference).

Every image of the study's series whose modality is selected (all when
``data.cohort.modalities`` is empty) is one sample with the study's label; the patient
key is the index's patient row (the pseudonym where intake de-identifies), so that the
split keeps a patient's studies together. Sex and age come from the index.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pydicom
from pydicom.errors import InvalidDicomError
from sqlalchemy import select
from sqlalchemy.orm import Session

from radpilot.core.settings import Settings
from radpilot.data.adjudication import latest_reads, majority_vote
from radpilot.store import Database
from radpilot.store.models import CaseAttribute, Instance, Read, Series, Study
from radpilot.training.config import TrainConfig
from radpilot.training.data import Dataset, TrainingDataError, input_spec
from radpilot.training.data_dicom import Collected, split_of

__all__ = ["adjudicate", "load_cohort"]


def adjudicate(reads: list[Read]) -> int | None:
    """The majority of the readers' latest values (1 or 0), or None on a tie."""
    ordered = sorted(reads, key=lambda r: r.id)  # same time: the later import counts
    return majority_vote(latest_reads((r.reader, r.read_at, r.value) for r in ordered).values())


def _labels(session: Session, config: TrainConfig, excluded: Counter[str]) -> dict[int, int]:
    cohort = config.data.cohort
    assert cohort is not None  # the caller dispatches on the source
    query = select(Read).where(Read.finding == cohort.finding)
    if cohort.readers:
        query = query.where(Read.reader.in_(cohort.readers))
    by_study: dict[int, list[Read]] = defaultdict(list)
    for read in session.scalars(query):
        by_study[read.study_pk].append(read)
    labels = {}
    for study_pk, reads in sorted(by_study.items()):
        value = adjudicate(reads)
        if value is None:
            excluded["tie between readers"] += 1
        else:
            labels[study_pk] = value
    return labels


def load_cohort(config: TrainConfig, settings: Settings) -> Dataset:
    """The indexed studies read for the finding, one sample per selected image.

    Raises
    ------
    TrainingDataError
        If no study has a read of the finding, or no image remains.
    """
    cohort = config.data.cohort
    assert cohort is not None  # the caller dispatches on the source
    spec, collected = input_spec(config), Collected()
    db = Database(settings.effective_database_url)
    try:
        with db.session() as session:
            labels = _labels(session, config, collected.excluded)
            if not labels:
                raise TrainingDataError(
                    f"cohort: no indexed study has a read of {cohort.finding!r}"
                    + (f" by {cohort.readers}" if cohort.readers else "")
                    + "; import reads with `radpilot labels import`"
                )
            splits: dict[int, str | None] = {}
            if cohort.split_attribute:
                rows = session.execute(
                    select(CaseAttribute.study_pk, CaseAttribute.value).where(
                        CaseAttribute.name == cohort.split_attribute
                    )
                )
                splits = {pk: split_of({"split": value or ""}, f"study {pk}") for pk, value in rows}
            for study_pk, label in labels.items():
                if cohort.split_attribute and splits.get(study_pk) is None:
                    collected.excluded[f"no {cohort.split_attribute} attribute"] += 1
                    continue
                study = session.get(Study, study_pk)
                assert study is not None  # reads reference studies
                query = (
                    select(Instance.file_path)
                    .join(Series, Instance.series_pk == Series.id)
                    .where(Series.study_pk == study_pk)
                    .order_by(Series.series_number, Instance.instance_number, Instance.id)
                )
                if cohort.modalities:
                    query = query.where(Series.modality.in_(cohort.modalities))
                paths = list(session.scalars(query))
                if not paths:
                    collected.excluded["no image of the selected modalities"] += 1
                    continue
                for path in paths:
                    try:
                        ds = pydicom.dcmread(settings.archive_dir / path)
                    except (InvalidDicomError, OSError):
                        collected.excluded["archive file unreadable"] += 1
                        continue
                    collected.add(
                        ds,
                        spec,
                        f"patient-{study.patient_pk}",
                        splits.get(study_pk),
                        label=label,
                        sex=study.patient.sex or None,
                        age=study.patient_age_years,
                    )
    finally:
        db.dispose()
    return collected.dataset(config, f"cohort: {cohort.finding} reads in the index")
