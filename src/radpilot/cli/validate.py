"""``radpilot validate``: a registered model against labelled cases; HTML, PDF and JSON."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pydicom
import typer
from pydicom.dataset import Dataset

from radpilot.cli.context import current_user, database, fail, settings_of
from radpilot.data.synth_perturb import PerturbationName
from radpilot.governance.audit import AuditLog
from radpilot.models.inference import load_model
from radpilot.models.manifest import Manifest, Task
from radpilot.models.package import ModelPackage
from radpilot.models.registry import Registry, parse_label
from radpilot.store import Database
from radpilot.store.models_validation import ValidationReportRecord
from radpilot.validation.binary import Options
from radpilot.validation.cases import CaseTable, Exclusion, build_cases
from radpilot.validation.cohort import LabelledStudy, labelled_studies, score_studies
from radpilot.validation.detection_report import detection_figures, render_detection_html
from radpilot.validation.measurement_report import measurement_figures, render_measurement_html
from radpilot.validation.readers import compare_readers
from radpilot.validation.report import ReportInputs, build_report
from radpilot.validation.report_html import render_html, write_pdf
from radpilot.validation.segmentation_report import (
    render_segmentation_html,
    segmentation_figures,
)
from radpilot.validation.stress import stress_curve
from radpilot.validation.usecase import UseCase, load_use_case
from radpilot.validation.usecase_store import get_use_case

__all__ = ["validate"]


def _finding(manifest: Manifest, asked: str | None) -> tuple[str, dict[str, float], str]:
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


def _names(text: str) -> tuple[str, str]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise typer.BadParameter("--names takes two names, e.g. 'internal,site B'")
    return parts[0], parts[1]


def _results_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def _collect(
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


def _stress(
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


def _reads_by_reader(studies: list[LabelledStudy], table: CaseTable) -> dict[str, dict[str, int]]:
    """reader -> case -> label, over the cases kept."""
    kept = set(table.case_ids)
    readers: dict[str, dict[str, int]] = {}
    for study in studies:
        if study.study_instance_uid in kept:
            for reader, value in study.reads.items():
                readers.setdefault(reader, {})[study.study_instance_uid] = value
    return readers


def _use_case(db: Database, given: str | None) -> tuple[UseCase | None, int | None]:
    """The use case named or in the file ``given``, and its stored record's id."""
    if not given:
        return None, None
    path = Path(given)
    if path.is_file():
        return load_use_case(path), None
    name, _, version = given.partition(":")
    try:
        record, case = get_use_case(db, name, int(version) if version.isdigit() else None)
    except LookupError as exc:
        fail(f"{exc.args[0]} (and no file {given!r})")
    return case, record.id


def _store(settings_dir: Path, output: Path, model: dict[str, str]) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = settings_dir / "validation" / model["name"] / model["version"] / stamp
    kept.mkdir(parents=True, exist_ok=False)
    for name in ("report.json", "report.html", "report.pdf"):
        shutil.copy2(output / name, kept / name)
    return kept


def validate(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", help="Registered model, NAME[:VERSION].")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the report.")],
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            exists=True,
            dir_okay=False,
            help="Reference labels (the `radpilot labels import` CSV); the model "
            "runs on each matched study.",
        ),
    ] = None,
    results: Annotated[
        Path | None,
        typer.Option(
            "--results",
            exists=True,
            dir_okay=False,
            help="Existing results instead: CSV with case_id, score, label "
            "(optional patient_id and attribute columns).",
        ),
    ] = None,
    use_case: Annotated[
        str | None,
        typer.Option(
            "--use-case",
            help="A registered use case NAME[:VERSION] (`radpilot "
            "usecases add`), or a use case YAML file: the verdict.",
        ),
    ] = None,
    prevalence: Annotated[
        float | None,
        typer.Option(
            "--prevalence",
            min=0.0,
            max=1.0,
            help="Deployment prevalence (default: the use case's).",
        ),
    ] = None,
    external_labels: Annotated[
        Path | None,
        typer.Option(
            "--external-labels",
            exists=True,
            dir_okay=False,
            help="A second, independent labelled set (another site): side by side.",
        ),
    ] = None,
    external_results: Annotated[
        Path | None,
        typer.Option(
            "--external-results",
            exists=True,
            dir_okay=False,
            help="The external set as a results file.",
        ),
    ] = None,
    names: Annotated[
        str, typer.Option("--names", help="Names of the two sets, comma-separated.")
    ] = "internal,external",
    stress: Annotated[
        str | None,
        typer.Option(
            "--stress",
            help="Perturbations to stress-test, comma-separated "
            "(noise, blur, low-dose, contrast, window-shift, rotation, crop, "
            "monochrome1, burned-in-text, metal-streaks); needs --labels.",
        ),
    ] = None,
    stress_cases: Annotated[
        int, typer.Option("--stress-cases", min=20, help="Studies used for stress tests.")
    ] = 300,
    reference_seg: Annotated[
        Path | None,
        typer.Option(
            "--reference-seg",
            exists=True,
            file_okay=False,
            help="Segmentation models: a folder of reference DICOM SEG files, each over "
            "a series in this installation.",
        ),
    ] = None,
    reference_boxes: Annotated[
        Path | None,
        typer.Option(
            "--reference-boxes",
            exists=True,
            dir_okay=False,
            help="Detection models: reference boxes, CSV with sop_instance_uid, label, "
            "x0, y0, x1, y1 in pixels (frame optional).",
        ),
    ] = None,
    finding: Annotated[str | None, typer.Option("--finding")] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=100)] = 2000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Validate a model on labelled cases: metrics with 95% CIs at its operating points,
    at the deployment prevalence, calibration, subgroups, and the verdict against the
    use case; writes report.json, report.html and report.pdf, and keeps a copy with the
    model version. Exit 1 when the cases cannot be validated (the reason on stderr)."""
    if stress and labels is None:
        raise typer.BadParameter("--stress needs --labels: it perturbs the studies' images")
    if external_labels is not None and external_results is not None:
        raise typer.BadParameter("give at most one of --external-labels and --external-results")
    if prevalence is not None and not 0.0 < prevalence < 1.0:
        raise typer.BadParameter("--prevalence must lie strictly between 0 and 1")
    settings = settings_of(ctx)
    with database(ctx) as db:
        case, case_pk = _use_case(db, use_case)
        registry = Registry(db, settings.models_dir)
        version = registry.get(*parse_label(model))
        package = registry.package_of(version)
        manifest = package.manifest
        info = {"name": version.name, "version": version.version,
                "weights_sha256": version.weights_sha256}  # fmt: skip
        if manifest.task in (Task.MEASUREMENT, Task.SEGMENTATION, Task.DETECTION):
            given = {"--labels": labels, "--results": results, "--stress": stress,
                     "--external-labels": external_labels,
                     "--external-results": external_results}  # fmt: skip
            if manifest.task is Task.MEASUREMENT:
                from radpilot.cli.validate_measurement import validate_measurement

                given.pop("--results")
                report, n, n_out = validate_measurement(
                    results, [k for k, v in given.items() if v], finding, case, info,
                    bootstrap, seed,
                )  # fmt: skip
            elif manifest.task is Task.SEGMENTATION:
                from radpilot.cli.validate_segmentation import validate_segmentation

                report, n, n_out = validate_segmentation(
                    db, settings.archive_dir, package, reference_seg,
                    [k for k, v in given.items() if v], finding, case, info, bootstrap, seed,
                )  # fmt: skip
            else:
                from radpilot.cli.validate_detection import validate_detection

                report, n, n_out = validate_detection(
                    db, settings.archive_dir, package, reference_boxes,
                    [k for k, v in given.items() if v], finding, case, info, bootstrap, seed,
                )  # fmt: skip
            kept = publish(db, settings.data_dir, output, report, version, case_pk,
                           cases=n, excluded=n_out)  # fmt: skip
            for line in report["summary"]:
                typer.echo(line)
            typer.echo(f"report: {output / 'report.html'} (kept in {kept})")
            return
        if reference_seg is not None or reference_boxes is not None:
            raise typer.BadParameter(
                "--reference-seg is for segmentation models, --reference-boxes for detection"
            )
        if (labels is None) == (results is None):
            raise typer.BadParameter("give exactly one of --labels and --results")
        name, thresholds, default = _finding(manifest, finding or (case.finding if case else None))
        archive = settings.archive_dir
        table, source, studies = _collect(db, archive, package, name, labels, results)
        other = None
        if external_labels is not None or external_results is not None:
            other, other_source, _ = _collect(
                db, archive, package, name, external_labels, external_results
            )
            source = f"{source}; external: {other_source}"
        options = Options(
            prevalence=prevalence
            if prevalence is not None
            else (case.prevalence if case else None),
            bootstrap=bootstrap,
            seed=seed,
        )
        inputs = ReportInputs(info, name, thresholds, default, use_case=case,
                              options=options, source=source,
                              body=case.case_noun if case else "studies",
                              external=other, names=_names(names))  # fmt: skip
        report = build_report(table, inputs)
        readers = _reads_by_reader(studies, table)
        if len(readers) >= 2:
            calls = dict(zip(table.case_ids, (table.scores >= thresholds[default]).tolist(),
                             strict=True))  # fmt: skip
            report["readers"] = compare_readers(readers, calls, bootstrap, seed)
        if stress:
            curves = _stress(package, studies, table, name, thresholds[default],
                             stress, stress_cases, archive)  # fmt: skip
            report["stress"] = curves
        kept = publish(db, settings.data_dir, output, report, version, case_pk,
                       cases=len(table), excluded=len(table.excluded))  # fmt: skip
    for line in report["summary"]:
        typer.echo(line)
    typer.echo(f"report: {output / 'report.html'} (kept in {kept})")


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
