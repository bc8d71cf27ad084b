"""The validation report of a detection model: JSON, a self-contained HTML page, a PDF."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from radpilot.core.svgplot import new_figure
from radpilot.validation.cases import Exclusion
from radpilot.validation.report_common import closing_lines, envelope
from radpilot.validation.report_html import render_page
from radpilot.validation.usecase import DETECTION_METRICS, Criterion, UseCase, judge_all

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["build_detection_report", "detection_figures", "detection_verdict",
           "render_detection_html"]  # fmt: skip

_RATE_OF = {"sensitivity_at_half_fp": "0.5", "sensitivity_at_1_fp": "1",
            "sensitivity_at_2_fp": "2"}  # fmt: skip


def detection_verdict(use_case: UseCase, result: dict[str, Any], finding: str) -> dict[str, Any]:
    """Each criterion of ``use_case`` on the label ``finding``."""
    entry = result["labels"].get(finding, {})

    def estimate_of(criterion: Criterion) -> dict[str, Any] | str:
        at = entry.get("sensitivity_at_fp")
        if not at:
            return f"no reference box of {finding!r}"
        found: dict[str, Any] = at[_RATE_OF[criterion.metric]]
        return found

    return judge_all(use_case, "detection", DETECTION_METRICS, estimate_of)


def _summary(report: dict[str, Any]) -> list[str]:
    d = report["detection"]
    lines = []
    for label, entry in d["labels"].items():
        if not entry.get("lesions"):
            lines.append(f"{label}: no reference box, not evaluated.")
            continue
        at = entry["sensitivity_at_fp"]
        parts = [
            f"{at[key]['value']:.1%} (95% CI {at[key]['low']:.1%} to {at[key]['high']:.1%}) "
            f"at {key} false positive(s) per image"
            for key in ("0.5", "1", "2")
        ]
        lines.append(
            f"{label}: {entry['lesions']} reference lesions on {d['images']} images; "
            f"sensitivity {'; '.join(parts)} (a detection counts when its box overlaps a "
            f"reference box of its label with IoU >= {d['iou_threshold']:g})."
        )
    return lines + closing_lines(report, "reference row(s) or studies")


def build_detection_report(
    result: dict[str, Any],
    excluded: list[Exclusion],
    *,
    model: dict[str, str],
    source: str,
    finding: str,
    use_case: UseCase | None = None,
) -> dict[str, Any]:
    """The whole report as a JSON-ready dict; ``result`` from
    :func:`radpilot.validation.detection.evaluate_detection`."""
    verdict = detection_verdict(use_case, result, finding) if use_case else None
    report = envelope("detection", result, model=model, finding=finding, source=source,
                      use_case=use_case, verdict=verdict, excluded=excluded)  # fmt: skip
    report["summary"] = _summary(report)
    return report


def _froc_plot(report: dict[str, Any]) -> Figure | None:
    labels = {k: v for k, v in report["detection"]["labels"].items() if v.get("lesions")}
    if not labels:
        return None
    figure = new_figure(4.8, 3.8)
    axes = figure.add_subplot()
    for label, entry in labels.items():
        x = [0.0, *(c["fp_per_image"] for c in entry["curve"])]
        y = [0.0, *(c["sensitivity"] for c in entry["curve"])]
        axes.step(x, y, where="post", label=label)
        for key, est in entry["sensitivity_at_fp"].items():
            if not math.isnan(est["low"]):
                axes.plot([float(key)] * 2, [est["low"], est["high"]], color="#c0392b", lw=1.5)
    most = max((c["fp_per_image"] for e in labels.values() for c in e["curve"]), default=0.0)
    axes.set(xlabel="false positives per image", ylabel="sensitivity", ylim=(0, 1.02),
             xlim=(0, max(2.5, most)))  # fmt: skip
    axes.legend(fontsize=7, loc="lower right")
    return figure


def detection_figures(report: dict[str, Any]) -> dict[str, Figure | None]:
    """The report's plots by name."""
    return {"froc": _froc_plot(report)}


def render_detection_html(report: dict[str, Any]) -> str:
    """The self-contained page (inline CSS and SVG, no scripts)."""
    return render_page("detection.html", report, detection_figures)
