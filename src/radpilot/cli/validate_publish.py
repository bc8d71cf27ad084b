"""Writing, keeping and recording a validation report (every kind of model)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from radpilot.cli.context import current_user
from radpilot.governance.audit import AuditLog
from radpilot.store import Database
from radpilot.store.models_validation import ValidationReportRecord
from radpilot.validation.detection_report import detection_figures, render_detection_html
from radpilot.validation.measurement_report import measurement_figures, render_measurement_html
from radpilot.validation.report_html import render_html, write_pdf
from radpilot.validation.segmentation_report import (
    render_segmentation_html,
    segmentation_figures,
)

__all__ = ["publish"]


def _store(settings_dir: Path, output: Path, model: dict[str, str]) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = settings_dir / "validation" / model["name"] / model["version"] / stamp
    kept.mkdir(parents=True, exist_ok=False)
    for name in ("report.json", "report.html", "report.pdf"):
        shutil.copy2(output / name, kept / name)
    return kept


def publish(
    db: Database, data_dir: Path, output: Path, report: dict[str, Any], version: Any,
    case_pk: int | None, *, cases: int, excluded: int,
) -> Path:  # fmt: skip
    """Write report.json, report.html and report.pdf to ``output``, keep a copy with the
    model version, record it and audit it; return where the copy lies."""
    output.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, allow_nan=True)
    (output / "report.json").write_text(text, encoding="utf-8")
    if report.get("kind") == "measurement":
        html = render_measurement_html(report)
        write_pdf(report, output / "report.pdf", measurement_figures(report), html=html)
    elif report.get("kind") == "segmentation":
        html = render_segmentation_html(report)
        write_pdf(report, output / "report.pdf", segmentation_figures(report), html=html)
    elif report.get("kind") == "detection":
        html = render_detection_html(report)
        write_pdf(report, output / "report.pdf", detection_figures(report), html=html)
    else:
        html = render_html(report)
        write_pdf(report, output / "report.pdf", html=html)
    (output / "report.html").write_text(html, encoding="utf-8")
    kept = _store(data_dir, output, report["model"])
    digest = hashlib.sha256(text.encode()).hexdigest()
    outcome = (report.get("verdict") or {}).get("verdict")
    with db.session() as session:
        session.add(ValidationReportRecord(
            model_version_pk=version.id, use_case_pk=case_pk,
            path=str(kept.relative_to(data_dir)), sha256=digest,
            cases=cases, excluded=excluded, verdict=outcome, created_by=current_user(),
        ))  # fmt: skip
    AuditLog(db).append(
        "validation.report",
        current_user(),
        f"{report['model']['name']}:{report['model']['version']}",
        {"sha256": digest, "cases": cases, "excluded": excluded, "verdict": outcome},
    )
    return kept
