"""The inventory as one self-contained HTML page: inline SVG plots, inline CSS, no scripts.

Plots are drawn with matplotlib on its Agg canvas (no GUI, no global backend switch) and
embedded as inline SVG, so the page opens anywhere, offline, and nothing is fetched.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections import Counter
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from radpilot.core.svgplot import new_figure, svg

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["human_bytes", "render_html"]

_SEVERITY_COLOURS = {"error": "#c0392b", "warning": "#e67e22", "info": "#7f8c8d"}
_SEX_COLOURS = {"F": "#c0392b", "M": "#2471a3", "O": "#7d3c98", "unknown": "#aab7b8"}


def human_bytes(size: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def render_html(inventory: dict[str, Any]) -> str:
    """Render an inventory (as built by :func:`~radpilot.data.build_inventory`) as HTML.

    Raises
    ------
    jinja2.TemplateError
        If the bundled template is missing or does not match the inventory's layout.
    """
    import matplotlib  # imported here: the CLI's other commands should not pay for it

    with (
        matplotlib.rc_context(
            {"svg.fonttype": "none", "svg.hashsalt": "radpilot-inventory", "text.parse_math": False}
        ),
        warnings.catch_warnings(),
    ):
        # Characters outside DejaVu Sans (e.g. CJK device names) are drawn as boxes; the
        # tables below the plots carry the exact text.
        warnings.filterwarnings(
            "ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning
        )
        plots = {
            "groups": _plot_groups(inventory),
            "dates": _plot_dates(inventory["date_range"]),
            "age": _plot_age(inventory["age"]),
            "labels": _plot_labels(inventory["labels"]),
            "problems": _plot_problems(inventory["problems"]),
        }
    env = Environment(
        loader=PackageLoader("radpilot.data", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
    )
    env.filters["bytes"] = human_bytes
    env.filters["dash"] = lambda value: "—" if value is None or value == "" else value
    return env.get_template("inventory.html").render(inv=inventory, plots=plots)


def _short(value: Any, width: int = 28) -> str:
    text = "(none)" if value is None or value == "" else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _barh(
    axes: Axes, labels: list[str], values: list[int], colour: str | list[str] = "#2471a3"
) -> None:
    positions = list(range(len(labels)))
    axes.barh(positions, values, color=colour)
    axes.set_yticks(positions, labels)
    axes.invert_yaxis()
    for pos, value in zip(positions, values, strict=True):
        axes.annotate(
            str(value),
            (value, pos),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    axes.margins(x=0.15)


def _plot_groups(inventory: dict[str, Any]) -> Markup | None:
    groups = inventory["groups"]
    if not groups:
        return None
    stack: dict[str, Counter[str]] = {}
    manufacturers: Counter[str] = Counter()
    for row in groups:
        modality, maker = _short(row["modality"], 12), _short(row["manufacturer"], 24)
        stack.setdefault(modality, Counter())[maker] += row["series"]
        manufacturers[maker] += row["series"]
    shown = [m for m, _ in manufacturers.most_common(8)]
    modalities = sorted(stack, key=lambda m: -sum(stack[m].values()))
    top = groups[:15]
    figure = new_figure(10, 3.2 + 0.22 * max(len(modalities), len(top)))
    left, right = figure.subplots(1, 2, width_ratios=[1, 1.3])
    from matplotlib import colormaps

    colours = colormaps["tab10"]
    base = [0] * len(modalities)
    for index, maker in enumerate([*shown, "other"]):
        values = [
            stack[m][maker]
            if maker != "other"
            else sum(n for k, n in stack[m].items() if k not in shown)
            for m in modalities
        ]
        if any(values):
            left.barh(modalities, values, left=base, label=maker, color=colours(index % 10))
            base = [b + v for b, v in zip(base, values, strict=True)]
    left.invert_yaxis()
    left.set_title("Series by modality and manufacturer")
    left.legend(fontsize=7, loc="lower right")
    labels = [
        " / ".join(_short(row[k], 16) for k in ("modality", "manufacturer", "model", "protocol"))
        for row in top
    ]
    _barh(right, labels, [row["studies"] for row in top])
    right.set_title("Studies per group: modality / manufacturer / model / protocol")
    right.tick_params(axis="y", labelsize=7)
    return svg(figure)


def _plot_dates(dates: dict[str, Any]) -> Markup | None:
    if not dates["by_month"]:
        return None
    first, last = dt.date.fromisoformat(dates["first"]), dt.date.fromisoformat(dates["last"])
    span = (last.year - first.year) * 12 + last.month - first.month + 1
    counts: Counter[str] = Counter()
    if span <= 48:  # every month of the range, empty ones included, so gaps show
        months = [first.month - 1 + i for i in range(span)]
        key, labels = "month", [f"{first.year + m // 12:04d}-{m % 12 + 1:02d}" for m in months]
    else:
        key, labels = "year", [f"{y:04d}" for y in range(first.year, last.year + 1)]
    for row in dates[f"by_{key}"]:
        counts[row[key]] += row["studies"]
    figure = new_figure(10, 2.6)
    axes = figure.subplots()
    axes.bar(labels, [counts[label] for label in labels], color="#2471a3")
    axes.set_title(f"Studies per {key} ({dates['first']} to {dates['last']})")
    axes.tick_params(axis="x", labelrotation=90, labelsize=7)
    axes.set_ylabel("studies")
    return svg(figure)


def _plot_age(age: dict[str, Any]) -> Markup | None:
    bands = [
        *age["bands"],
        {"band": "unknown", "by_sex": age["unknown_age_by_sex"], "paediatric": False},
    ]
    if not any(sum(b["by_sex"].values()) for b in bands):
        return None
    figure = new_figure(10, 3)
    axes = figure.subplots()
    width = 0.2
    for offset, sex in enumerate(_SEX_COLOURS):
        axes.bar(
            [i + (offset - 1.5) * width for i in range(len(bands))],
            [b["by_sex"][sex] for b in bands],
            width,
            label=sex,
            color=_SEX_COLOURS[sex],
        )
    axes.set_xticks(
        range(len(bands)), [b["band"] + ("\npaediatric" if b["paediatric"] else "") for b in bands]
    )
    axes.set_title("Studies by patient age at the study (years) and sex")
    axes.set_ylabel("studies")
    axes.legend(fontsize=7)
    return svg(figure)


def _plot_labels(labels: dict[str, Any]) -> Markup | None:
    with_labels, without = labels["studies_with_labels"], labels["studies_without"]
    if not with_labels and not without:
        return None
    findings = labels["by_finding"][:12]
    figure = new_figure(10, 2.4 + 0.22 * len(findings))
    left, right = figure.subplots(1, 2, width_ratios=[1, 2])
    _barh(left, ["with labels", "without labels"], [with_labels, without])
    left.set_title("Label availability per study")
    if findings:
        names = [_short(f["finding"], 24) for f in findings]
        right.barh(
            names, [f["positive_reads"] for f in findings], color="#c0392b", label="positive (1)"
        )
        right.barh(
            names,
            [f["negative_reads"] for f in findings],
            left=[f["positive_reads"] for f in findings],
            color="#7dcea0",
            label="negative (0)",
        )
        right.invert_yaxis()
        right.legend(fontsize=7)
        right.set_title("Reads per finding")
    else:
        right.set_axis_off()
        right.text(0.5, 0.5, "no reads imported (radpilot labels import)", ha="center")
    return svg(figure)


def _plot_problems(problems: list[dict[str, Any]]) -> Markup | None:
    found = [p for p in problems if p["count"]]
    if not found:
        return None
    figure = new_figure(10, 1.2 + 0.3 * len(found))
    axes = figure.subplots()
    _barh(
        axes,
        [f"{p['kind']} ({p['unit']})" for p in found],
        [p["count"] for p in found],
        [_SEVERITY_COLOURS[p["severity"]] for p in found],
    )
    axes.set_title("Problems found (red: error, orange: warning, grey: info)")
    return svg(figure)
