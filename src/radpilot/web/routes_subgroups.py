"""The dashboard's subgroup plot: ``/api/dashboard/subgroups/{attribute}.png``.

Sensitivity and specificity against reference labels, with Wilson 95% CIs, for each group
of one attribute (sex, age band, manufacturer, site) over the dashboard's window — the
numbers of the surveillance report for the same period
(:func:`radpilot.governance.surveillance.build_surveillance`) — with the validated
figures of the newest version's default operating point drawn in.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

from fastapi import APIRouter, HTTPException, Response, status

from radpilot.monitoring.dashboard import newest_manifest, validated_figures, window
from radpilot.web.deps import DbDep
from radpilot.web.routes_dashboard import Days, Overseer, _models

__all__ = ["ATTRIBUTES", "router"]

ATTRIBUTES = ("sex", "age", "manufacturer", "site")
router = APIRouter(tags=["monitoring"])


def _points(groups: dict[str, Any], key: str) -> tuple[list[float], list[list[float]]]:
    values: list[float] = []
    spans: list[list[float]] = [[], []]
    for group in groups.values():
        est = group[key]
        value = est["value"] if est["value"] is not None else float("nan")
        values.append(value)
        spans[0].append(value - est["low"] if est["low"] is not None else 0.0)
        spans[1].append(est["high"] - value if est["high"] is not None else 0.0)
    return values, spans


@router.get("/api/dashboard/subgroups/{attribute}.png", response_class=Response)
def subgroup_plot(
    db: DbDep, _actor: Overseer, attribute: str, model: str, days: Days = 30
) -> Response:
    """Sensitivity and specificity per group of ``attribute``, with CIs and the baseline."""
    if attribute not in ATTRIBUTES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no subgroup attribute {attribute!r}")
    from radpilot.core.svgplot import new_figure
    from radpilot.governance.surveillance import build_surveillance

    if model not in _models(db):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {model!r}")
    since, now = window(days)  # the dashboard's window, without computing the dashboard
    with db.session() as session:
        validated = validated_figures(newest_manifest(session, model))
    until = now + dt.timedelta(seconds=1)
    groups = build_surveillance(db, model, since, until, bucket_days=days)["subgroups"].get(
        attribute, {}
    )
    figure = new_figure(6.0, 0.6 + 0.35 * max(len(groups), 2))
    axis = figure.add_subplot(1, 1, 1)
    names = [f"{name} ({g['studies']})" for name, g in groups.items()]
    for offset, (key, colour) in enumerate((("sensitivity", "C0"), ("specificity", "C1"))):
        values, spans = _points(groups, key)
        rows = [i + (offset - 0.5) * 0.25 for i in range(len(values))]
        axis.errorbar(values, rows, xerr=spans, fmt="o", color=colour, label=key, capsize=2)
        baseline = validated[key]
        if baseline is not None:
            axis.axvline(baseline, color=colour, linestyle="--", linewidth=0.8,
                         label=f"validated {key}")  # fmt: skip
    axis.set_yticks(list(range(len(names))), names, fontsize=7)
    axis.set_xlim(0.0, 1.02)
    axis.set_title(f"Sensitivity and specificity by {attribute} (95% CI; studies)", fontsize=9)
    if groups:
        axis.legend(fontsize=7, loc="lower left")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return Response(
        buffer.getvalue(), media_type="image/png", headers={"Cache-Control": "no-store"}
    )
