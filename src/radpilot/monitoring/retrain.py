"""The retraining trigger: a candidate cohort from recent studies with confirmed labels,
a training config derived from the live version's model card, and optionally the run —
whose package is registered as a new version in state ``registered``, never more (it
must go through shadow, validation and the approvals like any version).

A label is **confirmed** by an outcome (reads ``outcome:*``: final reports, pathology;
majority of each source's latest read) or, without one, by the radiologist's latest
decision on the result: accept confirms the AI's call, reject reverses it, modify takes
the corrected label (the model's positive label → present, any other → absent). Each
confirmed label is stored once as a read by ``confirmed:<model>`` (with where it came
from), so the cohort is what ``radpilot train``'s ``cohort`` source reads and what the
dossier can cite. Studies without either are left out and counted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from radpilot.core.errors import RadpilotError
from radpilot.core.settings import Settings
from radpilot.data.adjudication import latest_reads, majority_vote
from radpilot.governance.audit import AuditLog
from radpilot.store import Database
from radpilot.store.models import Read
from radpilot.store.models_pipeline import Decision, Feedback, ModelState, ModelVersion, Result

__all__ = ["Cohort", "assemble_cohort", "candidate_config", "retrain"]


@dataclass
class Cohort:
    """What :func:`assemble_cohort` found."""

    reader: str
    finding: str
    studies: int = 0
    positives: int = 0
    from_outcome: int = 0
    from_feedback: int = 0
    added: int = 0  # new confirmed reads written now
    unconfirmed: int = 0
    notes: list[str] = field(default_factory=list)


def _live(session: Any, model: str) -> ModelVersion:
    rows: list[ModelVersion] = list(
        session.scalars(
            select(ModelVersion).where(ModelVersion.name == model).order_by(ModelVersion.id)
        )
    )
    if not rows:
        raise RadpilotError(f"no model {model!r}; `radpilot models list` shows them")
    active = [r for r in rows if r.state in (ModelState.ACTIVE, ModelState.PILOT)]
    return (active or rows)[-1]


def assemble_cohort(db: Database, model: str, since: dt.datetime | None = None) -> Cohort:
    """Confirm labels for the model's studies (since ``since``) and store them as reads."""
    with db.session() as session:
        version = _live(session, model)
        finding = str(version.manifest["output"]["labels"][-1])  # the present class
        cohort = Cohort(reader=f"confirmed:{model}", finding=finding)
        query = (
            select(Result)
            .join(ModelVersion, Result.model_version_pk == ModelVersion.id)
            .where(ModelVersion.name == model, Result.visible.is_(True))
        )
        if since is not None:
            query = query.where(Result.stored_at >= since)
        results = {r.study_pk: r for r in session.scalars(query.order_by(Result.id))}
        reads: dict[int, list[Read]] = {}
        for read in session.scalars(select(Read).where(Read.study_pk.in_(list(results)))):
            reads.setdefault(read.study_pk, []).append(read)
        decisions: dict[int, Feedback] = {}
        for f in session.scalars(
            select(Feedback)
            .where(Feedback.study_pk.in_(list(results)))
            .order_by(Feedback.decided_at, Feedback.id)
        ):
            decisions[f.study_pk] = f  # the latest wins
        for study, result in results.items():
            own = reads.get(study, [])
            if any(r.reader == cohort.reader for r in own):
                mine = [r for r in own if r.reader == cohort.reader][-1]
                cohort.studies += 1
                cohort.positives += mine.value
                continue
            outcome = majority_vote(
                latest_reads(
                    (r.reader, r.read_at, r.value) for r in own if r.reader.startswith("outcome:")
                ).values()
            )
            label, source = outcome, "outcome"
            if label is None and study in decisions:
                f = decisions[study]
                source = "feedback"
                if f.decision is Decision.ACCEPT:
                    label = int(result.positive)
                elif f.decision is Decision.REJECT:
                    label = 1 - int(result.positive)
                elif f.corrected_label:
                    label = int(f.corrected_label.strip().lower() == finding.lower())
            if label is None:
                cohort.unconfirmed += 1
                continue
            session.add(
                Read(
                    study_pk=study,
                    finding=finding,
                    value=label,
                    reader=cohort.reader,
                    attributes={"confirmed_by": source, "result": result.id},
                )
            )
            cohort.added += 1
            cohort.studies += 1
            cohort.positives += label
            if source == "outcome":
                cohort.from_outcome += 1
            else:
                cohort.from_feedback += 1
        AuditLog(db).append(
            "retrain.cohort",
            "radpilot",
            version.label,
            {
                "reader": cohort.reader,
                "studies": cohort.studies,
                "positives": cohort.positives,
                "added": cohort.added,
                "unconfirmed": cohort.unconfirmed,
            },
            session=session,
        )
        session.commit()
    return cohort


def candidate_config(
    db: Database,
    settings: Settings,
    model: str,
    cohort: Cohort,
    *,
    epochs: int = 10,
    version: str | None = None,
) -> dict[str, Any]:
    """A ``radpilot train`` config for a candidate: the live version's recipe (from its
    model card) on the confirmed cohort.

    Raises
    ------
    RadpilotError
        If the live version's package has no model card with its training recipe.
    """
    import json

    with db.session() as session:
        live = _live(session, model)
        manifest, package = dict(live.manifest), Path(settings.data_dir) / live.package_path
        label = live.label
    card_path = package / "model-card.json"
    if not card_path.is_file():
        raise RadpilotError(f"{label} has no model-card.json; its recipe is unknown")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    training, prep = card["training"], card["preprocessing"]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M")
    spec = manifest["input"]
    return {
        "schema": "radpilot.train/1",
        "name": manifest["name"],
        "version": version or f"{manifest['version']}-retrain.{stamp}",
        "task": "classification",
        "seed": int(training.get("seed", 0)),
        "threads": 2,
        "deterministic": True,
        "data": {
            "cohort": {"finding": cohort.finding, "readers": [cohort.reader]},
            "labels": list(manifest["output"]["labels"]),
        },
        "input": {
            "size": list(spec["size"]),
            "channels": int(spec.get("channels", 1)),
            "window": spec.get("window"),
            "keep_aspect": bool(spec.get("keep_aspect")),
            "normalize": "dataset",
        },
        "augment": prep.get("augmentation", {}),
        "network": {"name": training["network"], "kwargs": training.get("network_kwargs", {})},
        "optimizer": training.get("optimizer", {}),
        "schedule": training.get("schedule", {}),
        "training": {
            "epochs": epochs,
            "batch_size": int(training["loop"].get("batch_size", 32)),
            "early_stopping": {"metric": "auc"},
            "imbalance": training["loop"].get("imbalance", "none"),
        },
        "evaluation": {"bootstrap": 200},
        "card": {
            "intended_use": manifest["intended_use"],
            "limitations": list(manifest.get("limitations", [])),
            "description": f"Candidate retrained from {label} on {cohort.studies} studies "
            f"with confirmed labels ({cohort.from_outcome} by outcome, "
            f"{cohort.from_feedback} by radiologist decision). Not validated.",
            "use_case": manifest.get("use_case"),
            "applies_to": manifest.get("applies_to", {}),
            "critical_findings": list(manifest["output"].get("critical_findings", [])),
        },
    }


def retrain(
    db: Database,
    settings: Settings,
    model: str,
    folder: Path,
    *,
    since: dt.datetime | None = None,
    epochs: int = 10,
    run: bool = False,
    min_cases: int = 50,
) -> dict[str, Any]:
    """Assemble, write ``folder/train.yaml``, and with ``run`` train and register.

    Raises
    ------
    RadpilotError
        With fewer than ``min_cases`` confirmed studies, or when the run fails.
    """
    cohort = assemble_cohort(db, model, since)
    if cohort.studies < min_cases:
        raise RadpilotError(
            f"{cohort.studies} studies with confirmed labels; a candidate "
            f"needs at least {min_cases} (--min-cases)"
        )
    config = candidate_config(db, settings, model, cohort, epochs=epochs)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    summary: dict[str, Any] = {"cohort": vars(cohort), "config": str(path), "registered": None}
    if run:
        from radpilot.models.registry import Registry
        from radpilot.training.config import load_config
        from radpilot.training.run import run_training

        result = run_training(
            load_config(path), folder / "run", settings=settings, progress=False, overwrite=True
        )
        package = Path(result.package)
        version = Registry(db, settings.models_dir).add(package, added_by="radpilot retrain")
        summary["registered"] = {"label": version.label, "state": version.state.value}
    return summary
