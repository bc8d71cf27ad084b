"""The validation report for people: one self-contained HTML page and a PDF.

The page (inline CSS and SVG, no scripts, nothing fetched) holds the summary in plain
terms, the verdict, the ROC curve with a pointwise 95% band, the reliability diagram,
the confusion matrix at the default threshold, every operating point, the subgroup forest
plot and table, the test set's inventory, exclusions and the checklist. The PDF is the
same page laid out for A4 by WeasyPrint (no browser needed), or, where WeasyPrint cannot
load the system's Pango, the summary and plots drawn with matplotlib.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from radpilot.core.svgplot import new_figure, svg
from radpilot.validation.stats import roc_points, wilson

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["figures", "render_html", "render_page", "write_pdf"]

log = logging.getLogger(__name__)


def _cases(report: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    kept = [c for c in report["cases"] if c["excluded"] is None]
    return (np.asarray([c["score"] for c in kept], dtype=np.float64),
            np.asarray([c["label"] for c in kept], dtype=np.int64))  # fmt: skip


def _roc(report: dict[str, Any]) -> Figure:
    scores, labels = _cases(report)
    _, sens, spec = roc_points(scores, labels)
    positives = int(labels.sum())
    band = [wilson(round(s * positives), positives) for s in sens]
    figure = new_figure(4.2, 4.0)
    axes = figure.add_subplot()
    fpr = np.r_[0.0, 1 - spec, 1.0]
    axes.fill_between(fpr, np.r_[0.0, [b.low for b in band], 1.0],
                      np.r_[0.0, [b.high for b in band], 1.0], step="post",
                      color="#aed6f1", label="95% CI of sensitivity")  # fmt: skip
    axes.step(fpr, np.r_[0.0, sens, 1.0], where="post", color="#1f618d", label="model")
    axes.plot([0, 1], [0, 1], color="#aab7b8", lw=0.8, ls="--")
    for name, point in report["binary"]["operating_points"].items():
        x = 1 - point["specificity"]["value"]
        axes.plot([x], [point["sensitivity"]["value"]], "o", color="#c0392b")
        axes.annotate(name, (x, point["sensitivity"]["value"]), xytext=(5, -10),
                      textcoords="offset points", fontsize=8)  # fmt: skip
    axes.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(loc="lower right", fontsize=8)
    return figure


def _calibration(report: dict[str, Any]) -> Figure:
    figure = new_figure(4.2, 4.0)
    axes = figure.add_subplot()
    bins = report["binary"]["calibration"]["bins"]
    x = [b["mean_score"] for b in bins]
    y = [b["observed"]["value"] for b in bins]
    # clamped: a Wilson bound can miss 0 or 1 by a rounding error
    err = [[max(0.0, v - b["observed"]["low"]) for v, b in zip(y, bins, strict=True)],
           [max(0.0, b["observed"]["high"] - v) for v, b in zip(y, bins, strict=True)]]  # fmt: skip
    axes.errorbar(x, y, yerr=err, fmt="o-", color="#1f618d", capsize=2, label="observed")
    axes.plot([0, 1], [0, 1], color="#aab7b8", lw=0.8, ls="--", label="perfect")
    axes.set(xlabel="mean score in bin", ylabel="observed rate", xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(loc="upper left", fontsize=8)
    return figure


def _forest(report: dict[str, Any]) -> Figure | None:
    rows = [(f"{name}: {group}", values)
            for name, attribute in report["subgroups"]["attributes"].items()
            for group, values in attribute["groups"].items()]  # fmt: skip
    if not rows:
        return None
    figure = new_figure(7.5, 0.25 * len(rows) + 1.0)
    overall = report["binary"]["operating_points"][report["default_operating_point"]]
    for column, metric in enumerate(("sensitivity", "specificity")):
        axes = figure.add_subplot(1, 2, column + 1)
        for i, (_, values) in enumerate(rows):
            m = values[metric]
            if math.isnan(m["value"]):
                continue
            colour = "#c0392b" if m.get("differs") else (
                "#1f618d" if m["judgeable"] else "#aab7b8")  # fmt: skip
            axes.plot([m["low"], m["high"]], [i, i], color=colour, lw=1.5)
            axes.plot([m["value"]], [i], "s", color=colour, ms=4)
        axes.axvline(overall[metric]["value"], color="#7f8c8d", lw=0.8, ls="--")
        axes.set_yticks(range(len(rows)), [r[0] if column == 0 else "" for r in rows],
                        fontsize=7)  # fmt: skip
        axes.invert_yaxis()
        axes.set(xlim=(0, 1.0), xlabel=metric)
    return figure


def _stress(curve: dict[str, Any]) -> Figure:
    figure = new_figure(4.2, 3.2)
    axes = figure.add_subplot()
    labels = ["none", *[p["strength"] or "on" for p in curve["points"]]]
    x = np.arange(len(labels))
    for metric, colour in (("auc", "#1f618d"), ("sensitivity", "#c0392b"),
                           ("specificity", "#1e8449")):  # fmt: skip
        base = curve["baseline"][metric]
        if base is None:
            continue
        values = [base["value"], *[(p[metric] or {}).get("value", np.nan) for p in curve["points"]]]
        axes.plot(x, values, "o-", color=colour, label=metric, ms=3)
        axes.axhspan(base["low"], base["high"], color=colour, alpha=0.12)
    axes.set_xticks(x, labels)
    axes.set(xlabel=f"{curve['perturbation']} strength", ylim=(0, 1.02))
    axes.legend(fontsize=7, loc="lower left")
    return figure


def figures(report: dict[str, Any]) -> dict[str, Figure | None]:
    """The report's plots by name."""
    out: dict[str, Figure | None] = {
        "roc": _roc(report), "calibration": _calibration(report), "forest": _forest(report),
    }  # fmt: skip
    for curve in report.get("stress", []):
        out[f"stress {curve['perturbation']}"] = _stress(curve)
    return out


def _pct(value: float | None) -> str:
    return (
        "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1%}"
    )


def _ci(estimate: dict[str, Any] | None, percent: bool = True) -> str:
    if not estimate or estimate["value"] is None or math.isnan(estimate["value"]):
        return "—"
    f = _pct if percent else (lambda v: f"{v:.3f}")
    return f"{f(estimate['value'])} ({f(estimate['low'])} to {f(estimate['high'])})"


def render_page(
    template: str,
    report: dict[str, Any],
    plots_of: Callable[[dict[str, Any]], dict[str, Figure | None]],
) -> str:
    """A self-contained page: ``template`` with ``report`` and its plots as inline SVG."""
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "radpilot-validation"}):
        plots: dict[str, Markup | None] = {
            name: None if fig is None else svg(fig) for name, fig in plots_of(report).items()
        }
    env = Environment(
        loader=PackageLoader("radpilot.validation", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
    )
    env.filters["pct"] = _pct
    env.filters["ci"] = _ci
    env.filters["ci3"] = lambda e: _ci(e, percent=False)
    env.filters["num"] = lambda v: "—" if v is None or math.isnan(v) else f"{v:.4g}"
    return env.get_template(template).render(r=report, plots=plots)


def render_html(report: dict[str, Any]) -> str:
    """The self-contained page of a classification report."""
    return render_page("validation.html", report, figures)


def write_pdf(
    report: dict[str, Any],
    path: Path,
    plots: dict[str, Figure | None] | None = None,
    *,
    html: str | None = None,
) -> str:
    """The report as a PDF; returns how it was made.

    With ``html``, the page itself, laid out for A4 by WeasyPrint (the same text, tables and
    plots as the HTML). Where WeasyPrint cannot run (it needs the system's Pango library),
    and without ``html``: the summary, verdict and plots (``figures(report)`` unless given)
    drawn with matplotlib.
    """
    if html is not None:
        with warnings.catch_warnings():
            # Without the system's libharfbuzz-subset, WeasyPrint subsets fonts with
            # fontTools and warns (on import) that a future version will need the library.
            warnings.filterwarnings("ignore", "HarfBuzz-Subset", DeprecationWarning)
            try:
                from weasyprint import HTML
            except OSError as exc:  # Pango missing: WeasyPrint raises at import
                log.warning("PDF: WeasyPrint cannot load Pango (%s); summary and plots only", exc)
            else:
                HTML(string=html).write_pdf(path, pdf_identifier=b"radpilot-validation")
                return "the HTML page (WeasyPrint)"
    _plots_pdf(report, path, plots)
    return "summary, verdict and plots (matplotlib)"


def _plots_pdf(report: dict[str, Any], path: Path, plots: dict[str, Figure | None] | None) -> None:
    from matplotlib.backends.backend_pdf import PdfPages

    with warnings.catch_warnings(), PdfPages(path, metadata={"CreationDate": None}) as pdf:
        warnings.simplefilter("ignore", UserWarning)
        page = new_figure(8.27, 11.69)
        title = f"Validation of {report['model']['name']} {report['model']['version']}"
        page.text(0.06, 0.95, title, fontsize=15, weight="bold")
        y = 0.91
        for line in report["summary"]:
            for part in _wrap(line, 95):
                page.text(0.06, y, part, fontsize=9.5)
                y -= 0.022
            y -= 0.008
        for row in (report.get("verdict") or {}).get("criteria", []):
            page.text(0.08, y, f"{row['criterion']}: {row['outcome']}", fontsize=9)
            y -= 0.02
        pdf.savefig(page)
        for figure in (figures(report) if plots is None else plots).values():
            if figure is not None:
                pdf.savefig(figure)


def _wrap(text: str, width: int) -> list[str]:
    words, lines, current = text.split(), [], ""
    for word in words:
        if len(current) + len(word) + 1 > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    return [*lines, current] if current else lines
