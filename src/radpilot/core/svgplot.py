"""matplotlib figures drawn off-screen and embedded in HTML as inline SVG.

Plots are drawn on matplotlib's Agg canvas (no GUI, no global backend switch) and
embedded as inline SVG, so a page opens anywhere, offline, and nothing is fetched.
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING

from markupsafe import Markup

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["new_figure", "svg"]

_DROP = (
    re.compile(r"<metadata>.*?</metadata>", re.DOTALL),
    re.compile(r'\s+xmlns(?::\w+)?="[^"]*"'),
)


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def svg(figure: Figure) -> Markup:
    """Inline SVG without prolog, metadata or namespace URLs (HTML5 supplies those)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue().decode("utf-8")
    text = text[text.index("<svg") :]
    for pattern in _DROP:
        text = pattern.sub("", text)
    text = text.replace("<svg ", '<svg role="img" class="plot" ', 1)
    return Markup(text)  # noqa: S704 - matplotlib's own SVG; labels are escaped by it
