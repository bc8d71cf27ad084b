"""The monitoring dashboard (admin and governance): ``/dashboard?model=NAME&days=30``,
its plots as PNG (``/api/dashboard/{plot}.png``: drawn by matplotlib on the server, so the
page needs no chart script) and its rows as CSV (``/api/dashboard.csv``)."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from radpilot.monitoring.alerts import load_rules
from radpilot.monitoring.dashboard import COLUMNS, dashboard
from radpilot.store.models_pipeline import ModelVersion
from radpilot.store.models_users import Role
from radpilot.web.deps import Actor, DbDep, SettingsDep, require_roles
from radpilot.web.pages import render

__all__ = ["PLOTS", "router"]

Overseer = Annotated[Actor, Depends(require_roles(Role.GOVERNANCE, Role.ADMIN))]
Days = Annotated[int, Query(ge=1, le=366)]
router = APIRouter(tags=["monitoring"])

#: plot name -> (title, series drawn: (column, low, high, label))
PLOTS: dict[str, tuple[str, list[tuple[str, str | None, str | None, str]]]] = {
    "volume": (
        "AI results and failed jobs per day",
        [("results", None, None, "results"), ("failed_jobs", None, None, "failed jobs")],
    ),
    "positive_rate": (
        "Positive rate (95% CI)",
        [("positive_rate", "positive_rate_low", "positive_rate_high", "positive rate")],
    ),
    "agreement": (
        "Agreement with radiologists (95% CI)",
        [("agreement", "agreement_low", "agreement_high", "accepted of decided")],
    ),
    "performance": (
        "Sensitivity and specificity against reference labels (95% CI)",
        [
            ("sensitivity", "sensitivity_low", "sensitivity_high", "sensitivity"),
            ("specificity", "specificity_low", "specificity_high", "specificity"),
        ],
    ),
    "drift": (
        "Input drift per day against the reference window",
        [
            ("drifted_fields", None, None, "fields drifted"),
            ("embedding_mmd", None, None, "embedding MMD² (right axis)"),
        ],
    ),
    "latency": (
        "Received to result stored, seconds",
        [("latency_p50_s", None, None, "median"), ("latency_p95_s", None, None, "p95")],
    ),
    "turnaround": (
        "Received to decided, seconds (median)",
        [
            ("turnaround_flagged_p50_s", None, None, "flagged"),
            ("turnaround_unflagged_p50_s", None, None, "not flagged"),
        ],
    ),
}


def _models(db: Any) -> list[str]:
    with db.session() as session:
        return sorted(set(session.scalars(select(ModelVersion.name))))


def _data(db: Any, settings: Any, model: str, days: int, drift: bool = False) -> dict[str, Any]:
    if model not in _models(db):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {model!r}")
    validated = None
    for rules in load_rules(settings.alert_rules_path).models:
        if rules.model == model and rules.positive_rate is not None:
            validated = rules.positive_rate.validated
    return dashboard(db, model, days, validated_rate=validated, drift=drift)


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
def dashboard_page(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    actor: Overseer,
    model: str | None = None,
    days: Days = 30,
) -> HTMLResponse:
    """Volume, failures, positive rate, agreement, performance, latency and turnaround
    per day; time saved."""
    models = _models(db)
    chosen = model or (models[0] if models else None)
    data = _data(db, settings, chosen, days) if chosen else None
    period = None
    if chosen and data:
        import datetime as dt

        from radpilot.governance.surveillance import build_surveillance

        since = dt.datetime.fromisoformat(data["since"])
        until = dt.datetime.fromisoformat(data["until"]) + dt.timedelta(seconds=1)
        period = build_surveillance(db, chosen, since, until, bucket_days=days)
    return render(
        request,
        "dashboard.html",
        {
            "actor": actor,
            "models": models,
            "model": chosen,
            "days": days,
            "data": data,
            "plots": PLOTS,
            "period": period,
        },
    )


@router.get("/api/dashboard.csv", response_class=Response)
def dashboard_csv(
    db: DbDep, settings: SettingsDep, _actor: Overseer, model: str, days: Days = 30
) -> Response:
    """The dashboard's rows, one per day, with each day's input drift."""
    data = _data(db, settings, model, days, drift=True)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS))
    writer.writeheader()
    writer.writerows(data["rows"])
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{model}-dashboard.csv"'},
    )


@router.get("/api/dashboard/{plot}.png", response_class=Response)
def dashboard_plot(
    db: DbDep, settings: SettingsDep, _actor: Overseer, plot: str, model: str, days: Days = 30
) -> Response:
    """One plot of the dashboard; the validated positive rate drawn in where known."""
    if plot not in PLOTS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no plot {plot!r}")
    from radpilot.core.svgplot import new_figure

    data = _data(db, settings, model, days, drift=plot == "drift")
    title, series = PLOTS[plot]
    figure = new_figure(6.0, 2.6)
    axis = figure.add_subplot(1, 1, 1)
    days_axis = [r["day"][5:] for r in data["rows"]]
    x = list(range(len(days_axis)))
    for column, low, high, label in series:
        points = [(i, r) for i, r in enumerate(data["rows"]) if r[column] is not None]
        target = axis
        if column == "embedding_mmd":  # its own scale, on the right
            target = axis.twinx()
            target.set_ylabel("MMD²", fontsize=7)
        target.plot(
            [i for i, _ in points],
            [r[column] for _, r in points],
            marker=".",
            label=label,
            color="C1" if column == "embedding_mmd" else None,
        )
        if low and high and points:
            axis.fill_between(
                [i for i, _ in points],
                [r[low] for _, r in points],
                [r[high] for _, r in points],
                alpha=0.2,
            )
    if plot == "positive_rate" and data["validated_rate"] is not None:
        axis.axhline(data["validated_rate"], color="grey", linestyle="--", label="validated")
    if plot == "performance":
        for key, colour in (("sensitivity", "C0"), ("specificity", "C1")):
            value = data["validated"][key]
            if value is not None:
                axis.axhline(
                    value, color=colour, linestyle="--", linewidth=0.8, label=f"validated {key}"
                )
        axis.set_ylim(0.0, 1.05)
    axis.set_title(title, fontsize=9)
    step = max(1, len(x) // 10)
    axis.set_xticks(x[::step], days_axis[::step], fontsize=7)
    shown = [
        line
        for ax in figure.axes  # the twin axis of the drift plot too
        for line in ax.get_lines()
        if not str(line.get_label()).startswith("_")
    ]
    if shown:
        axis.legend(shown, [str(line.get_label()) for line in shown], fontsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96)
    return Response(
        buffer.getvalue(), media_type="image/png", headers={"Cache-Control": "no-store"}
    )
