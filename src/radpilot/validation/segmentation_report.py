"""The validation report of a segmentation model: JSON, a self-contained HTML page, a PDF."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from radpilot.core.svgplot import new_figure
from radpilot.validation.cases import Exclusion
from radpilot.validation.report_common import closing_lines, envelope
from radpilot.validation.report_html import render_page
from radpilot.validation.usecase import SEGMENTATION_METRICS, Criterion, UseCase, judge_all

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["build_segmentation_report", "render_segmentation_html", "segmentation_figures",
           "segmentation_verdict"]  # fmt: skip


def segmentation_verdict(use_case: UseCase, labels: dict[str, Any], finding: str) -> dict[str, Any]:
    """Each criterion of ``use_case`` on the means of the label ``finding``."""
    means = labels[finding]["mean"] if finding in labels else {}

    def estimate_of(criterion: Criterion) -> dict[str, Any] | str:
        found = means.get(criterion.metric)
        if found is None or math.isnan(found["value"]):
            return f"no case of {finding!r} to measure it on"
        return dict(found)

    return judge_all(use_case, "segmentation", SEGMENTATION_METRICS, estimate_of)


def _summary(report: dict[str, Any]) -> list[str]:
    lines = []
    for label, m in report["segmentation"].items():
        dice, hd, sd = m["mean"]["dice"], m["mean"]["hd95_mm"], m["mean"]["surface_dice"]
        line = (f"{label}, {m['n']} {report['body']}: mean Dice {dice['value']:.3f} "
                f"(95% CI {dice['low']:.3f} to {dice['high']:.3f}), "
                f"median {m['median_dice']:.3f}")  # fmt: skip
        if not math.isnan(hd["value"]):
            line += (f"; HD95 {hd['value']:.1f} mm ({hd['low']:.1f} to {hd['high']:.1f}); "
                     f"surface Dice at {m['tolerance_mm']:g} mm {sd['value']:.3f}")  # fmt: skip
        if m["both_empty"]:
            line += f"; {m['both_empty']} case(s) empty in both, counted as Dice 1"
        lines.append(line + ".")
    return lines + closing_lines(report, "reference(s) or case(s)")


def build_segmentation_report(
    labels: dict[str, Any],
    excluded: list[Exclusion],
    *,
    model: dict[str, str],
    source: str,
    finding: str,
    use_case: UseCase | None = None,
) -> dict[str, Any]:
    """The whole report as a JSON-ready dict; ``labels`` from
    :func:`radpilot.validation.segmentation.summarise`."""
    verdict = segmentation_verdict(use_case, labels, finding) if use_case else None
    report = envelope("segmentation", labels, model=model, finding=finding, source=source,
                      use_case=use_case, verdict=verdict, excluded=excluded)  # fmt: skip
    report["summary"] = _summary(report)
    return report


def _dice_plot(report: dict[str, Any]) -> Figure:
    labels = list(report["segmentation"])
    figure = new_figure(5.0, 0.6 * len(labels) + 1.4)
    axes = figure.add_subplot()
    for i, label in enumerate(labels):
        dice = [row["dice"] for row in report["segmentation"][label]["cases"]]
        jitter = np.linspace(-0.15, 0.15, len(dice)) if len(dice) > 1 else np.zeros(1)
        axes.plot(dice, i + jitter, "o", ms=3, color="#1f618d", alpha=0.7)
        mean = report["segmentation"][label]["mean"]["dice"]
        axes.plot([mean["low"], mean["high"]], [i, i], color="#c0392b", lw=2)
        axes.plot([mean["value"]], [i], "s", color="#c0392b", ms=5)
    axes.set_yticks(range(len(labels)), labels)
    axes.set(xlim=(0, 1.02), xlabel="Dice per case (red: mean and its 95% CI)")
    return figure


def segmentation_figures(report: dict[str, Any]) -> dict[str, Figure | None]:
    """The report's plots by name."""
    return {"dice": _dice_plot(report) if report["segmentation"] else None}


def render_segmentation_html(report: dict[str, Any]) -> str:
    """The self-contained page (inline CSS and SVG, no scripts)."""
    return render_page("segmentation.html", report, segmentation_figures)
