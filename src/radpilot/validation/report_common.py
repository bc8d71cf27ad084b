"""What every kind of validation report holds besides its own numbers."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from typing import Any

from radpilot.validation.cases import Exclusion
from radpilot.validation.usecase import UseCase

__all__ = ["closing_lines", "envelope"]


def envelope(
    kind: str,
    body: Any,
    *,
    model: dict[str, str],
    finding: str,
    source: str,
    use_case: UseCase | None,
    verdict: dict[str, Any] | None,
    excluded: Sequence[Exclusion],
    kept: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The report of a ``kind`` (``measurement``, ``segmentation``, ``detection``) model:
    its ``body`` under that key, and one row per case, the ``kept`` ones and those
    excluded with the reason."""
    return {
        "schema": f"radpilot.validation.{kind}/1",
        "kind": kind,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": model,
        "finding": finding,
        "source": source,
        "body": use_case.case_noun if use_case else "studies",
        kind: body,
        "verdict": verdict,
        "cases": [*kept, *({"case_id": e.case_id, "excluded": e.reason} for e in excluded)],
        "excluded": len(excluded),
        "excluded_by_reason": dict(Counter(e.reason for e in excluded).most_common()),
    }


def closing_lines(report: dict[str, Any], what: str) -> list[str]:
    """The summary's last lines: how many ``what`` were left out, and the verdict."""
    lines = []
    if report["excluded"]:
        lines.append(f"{report['excluded']} {what} could not be used (reasons below).")
    if report.get("verdict"):
        lines.append(
            f"Verdict against the use case {report['verdict']['use_case']!r}: "
            f"{report['verdict']['verdict'].upper()}."
        )
    return lines
