"""``radpilot validate``: a registered model against labelled cases; HTML, PDF and JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from radpilot.cli.context import database, fail, settings_of
from radpilot.cli.validate_classification import (
    collect,
    finding_of,
    reads_by_reader,
    stress_curves,
)
from radpilot.cli.validate_publish import publish
from radpilot.models.manifest import Task
from radpilot.models.registry import Registry, parse_label
from radpilot.store import Database
from radpilot.validation.binary import Options
from radpilot.validation.readers import compare_readers
from radpilot.validation.report import ReportInputs, build_report
from radpilot.validation.usecase import UseCase, load_use_case
from radpilot.validation.usecase_store import get_use_case

__all__ = ["validate"]


def _names(text: str) -> tuple[str, str]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise typer.BadParameter("--names takes two names, e.g. 'internal,site B'")
    return parts[0], parts[1]


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
            "(noise, blur, low-dose, contrast, window-shift, rotation, crop, resolution, "
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
        name, thresholds, default = finding_of(
            manifest, finding or (case.finding if case else None)
        )
        archive = settings.archive_dir
        table, source, studies = collect(db, archive, package, name, labels, results)
        other = None
        if external_labels is not None or external_results is not None:
            other, other_source, _ = collect(
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
        readers = reads_by_reader(studies, table)
        if len(readers) >= 2:
            calls = dict(zip(table.case_ids, (table.scores >= thresholds[default]).tolist(),
                             strict=True))  # fmt: skip
            report["readers"] = compare_readers(readers, calls, bootstrap, seed)
        if stress:
            curves = stress_curves(package, studies, table, name, thresholds[default],
                             stress, stress_cases, archive)  # fmt: skip
            report["stress"] = curves
        kept = publish(db, settings.data_dir, output, report, version, case_pk,
                       cases=len(table), excluded=len(table.excluded))  # fmt: skip
    for line in report["summary"]:
        typer.echo(line)
    typer.echo(f"report: {output / 'report.html'} (kept in {kept})")
