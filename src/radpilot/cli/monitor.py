"""``radpilot monitor``: is live traffic still what the model was validated on?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from radpilot.cli.context import database, fail, reporting_errors, settings_of

__all__ = ["app"]

app = typer.Typer(
    help="Drift of live traffic against a reference (docs/monitoring.md).", no_args_is_help=True
)


def _field(f: Any) -> dict[str, Any]:
    return {
        "field": f.name,
        "kind": f.kind,
        "statistic": round(f.statistic, 6),
        "p_value": f.p_value,
        "drifted": f.drifted,
        "new_categories": f.new_categories,
        "reference_n": f.reference_n,
        "live_n": f.live_n,
        "detail": f.detail,
    }


@app.command("drift")
def drift(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option(help="A model name: its studies, scores and input statistics.")
    ] = None,
    reference: Annotated[
        int, typer.Option(min=5, help="The first N studies are the reference.")
    ] = 200,
    window: Annotated[int, typer.Option(min=5, help="Studies per live window.")] = 50,
    step: Annotated[int, typer.Option(min=1, help="A window ends every STEP studies.")] = 10,
    validated_rate: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="The validated positive rate [default: the reference's]."
        ),
    ] = None,
    alpha: Annotated[float, typer.Option(min=1e-9, max=0.5, help="Per-window test level.")] = 0.01,
    format: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Compare rolling windows of studies with the reference; exit 3 when a window drifted."""
    from radpilot.monitoring.drift import DriftThresholds
    from radpilot.monitoring.features import study_features
    from radpilot.monitoring.stream import first_alarm, scan

    with reporting_errors(), database(ctx) as db, db.session() as session:
        rows = study_features(session, model)
    if len(rows) < reference + window:
        fail(
            f"{len(rows)} studies; drift needs at least --reference + --window "
            f"({reference + window})"
        )
    windows = scan(rows, reference, window, step, DriftThresholds(alpha=alpha), validated_rate)
    alarm = first_alarm(windows)
    latest = windows[-1]
    if format == "json":
        body = {
            "model": model,
            "studies": len(rows),
            "reference": reference,
            "window": window,
            "windows": len(windows),
            "first_alarm": None
            if alarm is None
            else {"studies_seen": alarm.studies_seen, "drifted": alarm.drifted},
            "latest": {
                "start": latest.start,
                "end": latest.end,
                "drifted": latest.drifted,
                "fields": [_field(f) for f in latest.comparison.fields],
                "positive_rate": None
                if latest.comparison.rate is None
                else vars(latest.comparison.rate),
            },
        }
        typer.echo(json.dumps(body, default=str))
    else:
        typer.echo(
            f"{len(rows)} studies; reference: the first {reference}; "
            f"{len(windows)} windows of {window}"
        )
        for f in latest.comparison.fields:
            mark = "DRIFT" if f.drifted else ""
            typer.echo(
                f"{f.name:<20} {f.kind:<12} {f.statistic:>9.3f} p={f.p_value:<10.3g} "
                f"{mark:<6} {f.detail}"
            )
        rate = latest.comparison.rate
        if rate is not None:
            typer.echo(
                f"{'positive_rate':<20} {rate.reference_rate:.3f} -> {rate.live_rate:.3f} "
                f"p={rate.p_value:.3g} {'DRIFT' if rate.drifted else ''}"
            )
        if alarm is not None:
            typer.echo(
                f"first alarm after {alarm.studies_seen} live studies: " + ", ".join(alarm.drifted)
            )
    if alarm is not None:
        raise typer.Exit(code=3)


@app.command("discordance")
def discordance(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="The model name.")],
    p0: Annotated[
        float, typer.Option(min=0.0001, max=0.9, help="In-control discordance (reference).")
    ],
    p1: Annotated[
        float | None, typer.Option(min=0.0002, max=0.99, help="Rate to detect [default: 2 p0].")
    ] = None,
    arl0: Annotated[
        float, typer.Option(min=50, help="Mean decisions between false alarms.")
    ] = 1000.0,
    format: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Bernoulli CUSUM of rejected or modified AI results; exit 3 on an alarm."""
    from radpilot.monitoring.discordance import Cusum, decision_stream, threshold_for_arl

    rise = p1 if p1 is not None else min(2 * p0, 0.99)
    if not p0 < rise:
        fail("--p1 must be above --p0")
    with reporting_errors(), database(ctx) as db, db.session() as session:
        stream = decision_stream(session, model)
    h = threshold_for_arl(p0, rise, arl0)
    result = Cusum(p0, rise, h).run(stream)
    body = {
        "model": model,
        "decisions": len(stream),
        "discordant": sum(stream),
        "p0": p0,
        "p1": rise,
        "arl0": arl0,
        "h": h,
        "statistic": result.statistic[-1] if result.statistic else 0.0,
        "alarm_at": result.alarm_at,
    }
    if format == "json":
        typer.echo(json.dumps(body))
    else:
        typer.echo(
            f"{len(stream)} decisions, {sum(stream)} discordant; CUSUM p0={p0} p1={rise} "
            f"h={h} (ARL0 {arl0:.0f}): statistic {body['statistic']:.2f}"
        )
        if result.alarm_at is not None:
            typer.echo(f"ALARM at decision {result.alarm_at}")
    if result.alarm_at is not None:
        raise typer.Exit(code=3)


@app.command("check")
def check(
    ctx: typer.Context,
    format: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Evaluate the alert rules once (radpilot serve does it every
    RADPILOT_ALERT_CHECK_SECONDS); print the alerts opened now."""
    from radpilot.monitoring.alerts import evaluate, load_rules
    from radpilot.store.models_alerts import Alert

    settings = settings_of(ctx)
    with reporting_errors(), database(ctx) as db:
        rules = load_rules(settings.alert_rules_path)
        opened = evaluate(db, settings, rules)
        with db.session() as session:
            rows = [session.get(Alert, i) for i in opened]
            found = [
                {"id": a.id, "model": a.model, "cause": a.cause, "message": a.message}
                for a in rows
                if a is not None
            ]
    if format == "json":
        typer.echo(json.dumps(found))
        return
    typer.echo(f"{len(rules.models)} model(s) with rules; {len(found)} new alert(s)")
    for a in found:
        typer.echo(f"  #{a['id']} {a['model']} {a['cause']}: {a['message']}")


@app.command("retrain")
def retrain_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="The model name.")],
    output: Annotated[Path, typer.Option(help="Folder for train.yaml and the run.")],
    since: Annotated[str | None, typer.Option(help="Only results since YYYY-MM-DD.")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 10,
    run: Annotated[bool, typer.Option("--run", help="Train and register the candidate.")] = False,
    min_cases: Annotated[int, typer.Option(min=10, help="Fewest confirmed studies.")] = 50,
) -> None:
    """Assemble a cohort with confirmed labels and write a candidate's training config;
    with --run, train it and register the candidate (state registered)."""
    import datetime as dt

    from radpilot.monitoring.retrain import retrain

    start = None
    if since:
        try:
            day = dt.date.fromisoformat(since)
        except ValueError:
            raise typer.BadParameter("a date, YYYY-MM-DD", param_hint="--since") from None
        start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    with reporting_errors(), database(ctx) as db:
        summary = retrain(
            db,
            settings_of(ctx),
            model,
            output,
            since=start,
            epochs=epochs,
            run=run,
            min_cases=min_cases,
        )
    typer.echo(json.dumps(summary, default=str))
