"""Data about the data: the archive's inventory, reference labels and reader reads.

``build_inventory`` counts what the index holds (SQL aggregates, no patient identifiers);
``render_html`` turns it into a self-contained page; ``import_labels`` attaches labels
and reads from CSV files to studies. matplotlib is imported only when a page is drawn.
"""

from radpilot.data.inventory import SCHEMA, build_inventory
from radpilot.data.inventory_html import render_html
from radpilot.data.labels import (
    LabelFileError,
    LabelImportOptions,
    LabelImportSummary,
    RowIssue,
    import_labels,
)

__all__ = [
    "SCHEMA",
    "LabelFileError",
    "LabelImportOptions",
    "LabelImportSummary",
    "RowIssue",
    "build_inventory",
    "import_labels",
    "render_html",
]
