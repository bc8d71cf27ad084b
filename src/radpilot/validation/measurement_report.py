"""The validation report of a measurement model: JSON, a self-contained HTML page, a PDF.

Built from :func:`radpilot.validation.measurement.evaluate_measurement`; the page shows
the summary in plain terms, the verdict against the use case, the Bland-Altman plot, the
measured-against-reference scatter, the subgroup table, and the exclusions.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from radpilot.core.svgplot import new_figure
from radpilot.validation.measurement import MeasurementCases, evaluate_measurement
from radpilot.validation.report_common import closing_lines, envelope
from radpilot.validation.report_html import render_page
from radpilot.validation.usecase import MEASUREMENT_METRICS, Criterion, UseCase, judge_all

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["build_measurement_report", "measurement_figures", "measurement_verdict",
           "render_measurement_html"]  # fmt: skip


def _distance_to_zero(low: float, high: float) -> float:
    return 0.0 if low <= 0.0 <= high else min(abs(low), abs(high))


def _absolute(estimate: dict[str, Any]) -> dict[str, Any]:
    """|x| with the interval of |x| implied by the interval of x."""
    low, high = estimate["low"], estimate["high"]
    return {"value": abs(estimate["value"]), "low": _distance_to_zero(low, high),
            "high": max(abs(low), abs(high))}  # fmt: skip


def _limits(agreement: dict[str, Any]) -> dict[str, Any]:
    """How far the farther limit of agreement lies from 0, with the interval implied by
    both limits' CIs."""
    lower, upper = agreement["lower_limit"], agreement["upper_limit"]
    return {
        "value": max(abs(lower["value"]), abs(upper["value"])),
        "low": max(_distance_to_zero(lower["low"], lower["high"]),
                   _distance_to_zero(upper["low"], upper["high"])),
        "high": max(abs(lower["low"]), abs(lower["high"]),
                    abs(upper["low"]), abs(upper["high"])),
    }  # fmt: skip


def measurement_verdict(use_case: UseCase, result: dict[str, Any]) -> dict[str, Any]:
    """Each criterion of ``use_case`` on ``result``, and the overall verdict."""
    estimates: dict[str, dict[str, Any] | None] = {
        "mae": result["mae"],
        "rmse": result["rmse"],
        "icc": result["icc"],
        "abs_bias": _absolute(result["bland_altman"]["bias"]),
        "limits_of_agreement": _limits(result["bland_altman"]),
        "within_tolerance": result["within_tolerance"],
    }

    def estimate_of(criterion: Criterion) -> dict[str, Any] | str:
        return estimates[criterion.metric] or "the use case declares no tolerance"

    return judge_all(use_case, "measurement", MEASUREMENT_METRICS, estimate_of)


def _g(value: float) -> str:
    return f"{value:+.3g}" if value else "0"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The findings in the words a clinician reads first."""
    m = report["measurement"]
    unit = f" {m['unit']}" if m["unit"] else ""
    ba = m["bland_altman"]
    bias, lower, upper = ba["bias"], ba["lower_limit"], ba["upper_limit"]
    lines = [
        f"On {m['n']} {report['body']} ({m['patients']} patients), the model's "
        f"{m['measurement']} differed from the reference by {_g(bias['value'])}{unit} on "
        f"average (95% CI {_g(bias['low'])} to {_g(bias['high'])}); 95% of differences lay "
        f"between {_g(lower['value'])} and {_g(upper['value'])}{unit}.",
        f"Mean absolute error {m['mae']['value']:.3g}{unit} (95% CI {m['mae']['low']:.3g} to "
        f"{m['mae']['high']:.3g}); ICC(2,1) {m['icc']['value']:.3f} "
        f"({m['icc']['low']:.3f} to {m['icc']['high']:.3f}).",
    ]
    if m["within_tolerance"] is not None:
        w = m["within_tolerance"]
        lines.append(
            f"Within the declared tolerance of {m['tolerance']:g}{unit}: {w['value']:.1%} of "
            f"cases (95% CI {w['low']:.1%} to {w['high']:.1%})."
        )
    slope = m["proportional_bias"]
    if not math.isnan(slope["value"]) and (slope["low"] > 0 or slope["high"] < 0):
        lines.append(
            f"Proportional bias: the difference changes by {slope['value']:+.3g} per unit of "
            f"the value (95% CI {slope['low']:+.3g} to {slope['high']:+.3g}), so the error "
            "depends on the size of what is measured."
        )
    else:
        lines.append("No proportional bias was detected (the slope's 95% CI includes 0).")
    differs = [
        f"{name} {group}"
        for name, attribute in m["subgroups"]["attributes"].items()
        for group, g in attribute["groups"].items()
        if g["differs"]
    ]
    k = m["subgroups"]["comparisons"]
    lines.append(
        f"Subgroups whose bias differs from the rest (Holm-adjusted, {k} comparisons): "
        + ", ".join(differs)
        + "."
        if differs
        else f"No subgroup's bias differed from the rest ({k} comparisons, Holm-adjusted)."
    )
    return lines + closing_lines(report, "case(s)")


def build_measurement_report(
    cases: MeasurementCases,
    *,
    model: dict[str, str],
    source: str,
    use_case: UseCase | None = None,
    bootstrap: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The whole report as a JSON-ready dict."""
    tolerance = use_case.tolerance if use_case is not None else None
    result = evaluate_measurement(cases, tolerance=tolerance, bootstrap=bootstrap, seed=seed)
    kept = [
        {"case_id": c, "measured": float(v), "reference": float(r), "excluded": None}
        for c, v, r in zip(cases.case_ids, cases.measured, cases.reference, strict=True)
    ]
    verdict = measurement_verdict(use_case, result) if use_case else None
    report = envelope(
        "measurement",
        result,
        model=model,
        finding=cases.name,
        source=source,
        use_case=use_case,
        verdict=verdict,
        excluded=cases.excluded,
        kept=kept,
    )
    report["summary"] = summary_lines(report)
    return report


def _pairs(report: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    kept = [c for c in report["cases"] if c["excluded"] is None]
    return (np.asarray([c["measured"] for c in kept], dtype=np.float64),
            np.asarray([c["reference"] for c in kept], dtype=np.float64))  # fmt: skip


def _bland_altman(report: dict[str, Any]) -> Figure:
    measured, reference = _pairs(report)
    ba = report["measurement"]["bland_altman"]
    figure = new_figure(4.6, 3.8)
    axes = figure.add_subplot()
    axes.scatter((measured + reference) / 2, measured - reference, s=8, color="#1f618d")
    for key, colour, label in (("bias", "#1c2833", "bias"),
                               ("lower_limit", "#c0392b", "limits of agreement"),
                               ("upper_limit", "#c0392b", None)):  # fmt: skip
        estimate = ba[key]
        axes.axhline(estimate["value"], color=colour, lw=1.0, label=label)
        axes.axhspan(estimate["low"], estimate["high"], color=colour, alpha=0.12)
    tolerance = report["measurement"]["tolerance"]
    if tolerance is not None:
        for sign in (-1, 1):
            axes.axhline(sign * tolerance, color="#7f8c8d", lw=0.8, ls="--")
    unit = report["measurement"]["unit"]
    axes.set(xlabel=f"mean of model and reference {unit}".strip(),
             ylabel=f"model - reference {unit}".strip())  # fmt: skip
    axes.legend(fontsize=7, loc="best")
    return figure


def _scatter(report: dict[str, Any]) -> Figure:
    measured, reference = _pairs(report)
    figure = new_figure(4.0, 3.8)
    axes = figure.add_subplot()
    axes.scatter(reference, measured, s=8, color="#1f618d")
    low = float(min(measured.min(), reference.min()))
    high = float(max(measured.max(), reference.max()))
    axes.plot([low, high], [low, high], color="#aab7b8", lw=0.8, ls="--", label="identity")
    axes.set(xlabel="reference", ylabel="model")
    axes.legend(fontsize=7, loc="upper left")
    return figure


def measurement_figures(report: dict[str, Any]) -> dict[str, Figure | None]:
    """The report's plots by name."""
    return {"bland-altman": _bland_altman(report), "scatter": _scatter(report)}


def render_measurement_html(report: dict[str, Any]) -> str:
    """The self-contained page (inline CSS and SVG, no scripts)."""
    return render_page("measurement.html", report, measurement_figures)
