"""``radpilot validate`` for a measurement model: agreement with reference values."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import typer

from radpilot.cli.context import fail
from radpilot.validation.cases import ValidationDataError
from radpilot.validation.measurement import measurement_cases
from radpilot.validation.measurement_report import build_measurement_report
from radpilot.validation.usecase import UseCase

__all__ = ["validate_measurement"]


def validate_measurement(
    results: Path | None, unsupported: list[str], measurement: str | None,
    use_case: UseCase | None, model: dict[str, str], bootstrap: int, seed: int,
) -> tuple[dict[str, Any], int, int]:  # fmt: skip
    """The report, the cases kept and the cases excluded.

    The cases come from a results file (``case_id``, ``measured``, ``reference``, and
    optional ``patient_id``, ``measurement``, ``unit`` and attribute columns); reference
    values cannot yet be imported as labels, so ``--labels`` and the options that need
    it are refused with that reason.
    """
    if unsupported:
        raise typer.BadParameter(
            f"{', '.join(unsupported)}: not available for measurement models yet; give "
            "--results with case_id, measured and reference columns"
        )
    if results is None:
        raise typer.BadParameter(
            "a measurement model is validated from --results (case_id, measured, "
            "reference): label files hold findings, not reference values"
        )
    with results.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    try:
        cases = measurement_cases(rows, measurement or (use_case.finding if use_case else None))
    except ValidationDataError as exc:
        fail(f"{results.name}: {exc}")
    if use_case is not None and use_case.unit and cases.unit and use_case.unit != cases.unit:
        fail(f"the use case is in {use_case.unit!r}, the results in {cases.unit!r}")
    report = build_measurement_report(
        cases,
        model=model,
        source=f"results file {results.name}",
        use_case=use_case,
        bootstrap=bootstrap,
        seed=seed,
    )
    return report, len(cases), len(cases.excluded)
