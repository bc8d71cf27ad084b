"""The regulatory file of one model version: ``radpilot governance dossier NAME:VERSION``.

Everything comes from what radpilot recorded, nothing is typed in: the manifest (intended
use, indications, limitations, input and output, operating points), the package's model
card (training data inventory, recipe, environment), every validation report stored by
``radpilot validate`` (summary, verdict, criteria — read back from its ``report.json``
and checked against the SHA-256 recorded when it was stored), the change history and the
approvals (audit log and transition requests, with names and dates), and the
predetermined change control plan: the manifest's ``change_control`` section when it has
one, else radpilot's default plan (:data:`DEFAULT_PCCP`), marked as such.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select

from radpilot.core.errors import RadpilotError
from radpilot.core.settings import Settings
from radpilot.store import Database
from radpilot.store.models_governance import Transition
from radpilot.store.models_pipeline import AuditEntry, ModelVersion
from radpilot.store.models_validation import ValidationReportRecord

__all__ = ["DEFAULT_PCCP", "SCHEMA", "build_dossier"]

SCHEMA = "radpilot.dossier/1"

#: The plan used when the manifest has no ``change_control`` section.
DEFAULT_PCCP: dict[str, Any] = {
    "source": "radpilot default plan (the manifest has no change_control section)",
    "may_change_without_new_approval": [
        "Moving the operating threshold between the operating points listed in the "
        "manifest, each of which was validated.",
        "Routing rules that add studies within the manifest's applies_to (same modalities, "
        "body parts and views).",
        "Infrastructure that does not touch the model: workers, delivery destinations, "
        "radpilot updates that pass the test suite.",
    ],
    "needs_new_approval": [
        "New weights (any retraining or fine-tuning): a new version, registered and taken "
        "through shadow and pilot again.",
        "A new operating point, a new label or a change of the input specification.",
        "Use outside applies_to (another modality, body part, view or population).",
    ],
    "validation_protocol": [
        "Run `radpilot validate` on the locked test set and on recent local studies with "
        "confirmed labels; the use case's declared criteria must hold, with 95% CIs.",
        "Compare with the current version on the same studies (shadow run), overall and by "
        "subgroup (age, sex, manufacturer, site); no subgroup may lose significantly.",
        "Repeat the stress tests of the previous validation.",
    ],
    "impact_assessment": [
        "Expected change in sensitivity, specificity and missed cases per 10,000 scans at "
        "the local prevalence, with CIs, from the validation above.",
        "Effect on the worklist: the share of studies flagged, and the reading time.",
        "Who is told: the radiologists, the governance group, the vendor where relevant.",
    ],
}


class DossierError(RadpilotError):
    """The dossier cannot be built (unknown version)."""


def _report(settings: Settings, record: ValidationReportRecord) -> dict[str, Any]:
    folder = Path(settings.data_dir) / record.path
    entry: dict[str, Any] = {
        "created_at": record.created_at.isoformat(timespec="seconds"),
        "created_by": record.created_by,
        "cases": record.cases,
        "excluded": record.excluded,
        "verdict": record.verdict,
        "path": record.path,
        "summary": [],
        "criteria": [],
        "integrity": "report.json missing",
    }
    path = folder / "report.json"
    if path.is_file():
        data = path.read_bytes()
        same = hashlib.sha256(data).hexdigest() == record.sha256
        entry["integrity"] = "checked (SHA-256 as recorded)" if same else "ALTERED since stored"
        report = json.loads(data)
        entry["summary"] = list(report.get("summary", []))
        entry["criteria"] = [
            {k: row.get(k) for k in ("criterion", "outcome")}
            for row in (report.get("verdict") or {}).get("criteria", [])
        ]
        entry["finding"] = report.get("finding")
        entry["source"] = report.get("source")
    return entry


def _card(package: Path) -> dict[str, Any] | None:
    path = package / "model-card.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def build_dossier(db: Database, settings: Settings, name: str, version: str) -> dict[str, Any]:
    """Everything the dossier page shows, JSON-ready.

    Raises
    ------
    DossierError
        If ``name:version`` is not registered.
    """
    with db.session() as session:
        row = session.scalars(
            select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
        ).first()
        if row is None:
            raise DossierError(f"no model {name}:{version}; `radpilot models list` shows them")
        label = row.label
        reports = list(
            session.scalars(
                select(ValidationReportRecord)
                .where(ValidationReportRecord.model_version_pk == row.id)
                .order_by(ValidationReportRecord.id)
            )
        )
        history = [
            {
                "seq": e.seq,
                "at": e.at.isoformat(timespec="seconds"),
                "kind": e.kind,
                "actor": e.actor,
                "payload": e.payload,
            }
            for e in session.scalars(
                select(AuditEntry)
                .where(or_(AuditEntry.subject == label, AuditEntry.subject == f"model:{label}"))
                .order_by(AuditEntry.seq)
            )
        ]
        transitions = [
            {
                "id": t.id,
                "from": t.from_state.value,
                "to": t.to_state.value,
                "reason": t.reason,
                "requested_by": t.requested_by,
                "requested_at": t.requested_at.isoformat(timespec="seconds"),
                "status": t.status.value,
                "comparison": t.comparison,
                "decided_at": t.decided_at.isoformat(timespec="seconds") if t.decided_at else None,
                "approvals": [
                    {
                        "approver": a.approver,
                        "role": a.role,
                        "approved": a.approved,
                        "comment": a.comment,
                        "at": a.at.isoformat(timespec="seconds"),
                    }
                    for a in t.approvals
                ],
            }
            for t in session.scalars(
                select(Transition)
                .where(Transition.model_version_pk == row.id)
                .order_by(Transition.id)
            )
        ]
        manifest = dict(row.manifest)
        model = {
            "name": row.name,
            "version": row.version,
            "task": row.task,
            "runtime": row.runtime,
            "use_case": row.use_case,
            "weights_sha256": row.weights_sha256,
            "added_by": row.added_by,
            "added_at": row.added_at.isoformat(timespec="seconds"),
            "state": row.state.value,
        }
        package = Path(settings.data_dir) / row.package_path
    output = manifest.get("output", {})
    return {
        "schema": SCHEMA,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": model,
        "intended_use": manifest.get("intended_use"),
        "limitations": manifest.get("limitations", []),
        "applies_to": manifest.get("applies_to", {}),
        "input": manifest.get("input", {}),
        "labels": output.get("labels", []),
        "operating_points": output.get("operating_points", []),
        "default_operating_point": output.get("default_operating_point"),
        "critical_findings": output.get("critical_findings", []),
        "model_card": _card(package),
        "validation_reports": [_report(settings, r) for r in reports],
        "history": history,
        "transitions": transitions,
        "change_control": (
            {"source": "the model package's manifest (change_control)", **plan}
            if (plan := manifest.get("change_control"))
            else DEFAULT_PCCP
        ),
    }
