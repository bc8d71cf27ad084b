"""``radpilot train CONFIG.yaml``: train a model and write its package and model card."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from radpilot.cli.context import reporting_errors, settings_of

__all__ = ["train"]


class TrainFormat(enum.StrEnum):
    """How the outcome is printed."""

    TABLE = "table"
    JSON = "json"


def _summary(result: Any) -> dict[str, Any]:
    card = result.card
    return {
        "package": str(result.package),
        "name": card["model"]["name"],
        "version": card["model"]["version"],
        "weights_sha256": result.weights_sha256,
        "steps": card["training"]["steps"],
        "stopped": card["training"]["stopped"],
        "selected": card["training"]["selected"],
        "operating_points": card["operating_points"],
        "seconds": card["training"]["seconds"],
    }


def train(
    ctx: typer.Context,
    config: Annotated[
        Path,
        typer.Argument(
            help="Training config (YAML; docs/training.md).",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Run folder: package/, checkpoints/, history.json "
            "[default: DATA_DIR/training/NAME/VERSION].",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Reuse a run folder that is not empty.")
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Progress bar with running metrics [default: when stderr is a terminal].",
        ),
    ] = None,
    output_format: Annotated[
        TrainFormat, typer.Option("--format", case_sensitive=False, help="table or json.")
    ] = TrainFormat.TABLE,
) -> None:
    """Train the model CONFIG describes; write a model package with its model card.

    The config is checked before anything is loaded (an unknown key, a wrong type or a
    missing file is named with its line); the data before the first step (one class,
    an empty split, a patient in two splits). Same seed and data on the same machine
    give the same weights hash. Register the result with `radpilot models add
    RUN/package`.
    """
    settings = settings_of(ctx)
    with reporting_errors():
        from radpilot.training.config import load_config
        from radpilot.training.run import run_training

        parsed = load_config(config)
        folder = output or settings.data_dir / "training" / parsed.name / parsed.version
        result = run_training(
            parsed,
            folder,
            settings=settings,
            progress=sys.stderr.isatty() if progress is None else progress,
            overwrite=overwrite,
        )
    summary = _summary(result)
    if output_format is TrainFormat.JSON:
        typer.echo(json.dumps(summary, indent=1))
        return
    selected = summary["selected"]
    typer.echo(f"package:  {summary['package']}")
    typer.echo(f"weights:  sha256 {summary['weights_sha256']}")
    typer.echo(
        f"training: {summary['steps']} steps in {summary['seconds']} s, stopped by "
        f"{summary['stopped']}; selected step {selected['step']} "
        f"({selected['metric']} {selected['values'][selected['metric']]:.4f} on val)"
    )
    for point in summary["operating_points"]:
        typer.echo(
            f"operating point {point['name']}: {point['label']} >= {point['threshold']:.4f}"
            + (
                f" (val sensitivity {point['sensitivity']:.3f}, specificity "
                f"{point['specificity']:.3f})"
                if point.get("sensitivity") is not None
                else ""
            )
        )
    typer.echo(f"card:     {Path(summary['package']) / 'model-card.md'}")
