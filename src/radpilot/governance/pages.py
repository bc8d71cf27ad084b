"""Dossier and surveillance as self-contained HTML (inline SVG plots) and PDF (WeasyPrint,
as the validation reports are laid out), with their JSON beside them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from radpilot.core.svgplot import new_figure, svg

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["render", "write_all"]


def _est(value: dict[str, Any] | None) -> str:
    if not value or value.get("value") is None:
        return "—"
    return (
        f"{100 * value['value']:.1f} % ({100 * value['low']:.1f} to "
        f"{100 * value['high']:.1f}, n={value['n']})"
    )


def _trend(report: dict[str, Any]) -> Figure | None:
    buckets = report.get("buckets") or []
    if not buckets:
        return None
    figure = new_figure(7.5, 3.0)
    axis = figure.add_subplot(1, 1, 1)
    x = list(range(len(buckets)))
    for key, name in (("positive_rate", "positive rate"), ("agreement", "agreement")):
        points = [
            (i, b[key]) for i, b in zip(x, buckets, strict=True) if b[key]["value"] is not None
        ]
        if not points:
            continue
        xs = [i for i, _ in points]
        axis.plot(xs, [e["value"] for _, e in points], marker="o", label=name)
        axis.fill_between(
            xs, [e["low"] for _, e in points], [e["high"] for _, e in points], alpha=0.2
        )
    axis.set_xticks(x, [b["start"][:10] for b in buckets], rotation=30, fontsize=7)
    axis.set_ylim(0, 1)
    axis.set_ylabel("proportion (95% CI)")
    axis.legend(fontsize=8)
    return figure


def render(template: str, report: dict[str, Any]) -> str:
    """The page of ``report`` (a dossier or surveillance dict)."""
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "radpilot-governance"}):
        trend = _trend(report) if template == "surveillance.html" else None
        plots: dict[str, Markup | None] = {"trend": None if trend is None else svg(trend)}
    env = Environment(
        loader=PackageLoader("radpilot.governance", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
    )
    env.filters["est"] = _est
    env.filters["num"] = lambda v: "—" if v is None or math.isnan(v) else f"{v:.4g}"
    return env.get_template(template).render(r=report, plots=plots)


def write_all(report: dict[str, Any], template: str, folder: Path, stem: str) -> list[Path]:
    """``stem``.json, .html and .pdf in ``folder``; the paths written."""
    from radpilot.validation.report_html import write_pdf

    folder.mkdir(parents=True, exist_ok=True)
    html = render(template, report)
    paths = [folder / f"{stem}.json", folder / f"{stem}.html", folder / f"{stem}.pdf"]
    paths[0].write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    paths[1].write_text(html, encoding="utf-8")
    write_pdf({"model": {"name": stem, "version": ""}, "summary": []}, paths[2], {}, html=html)
    return paths
