"""Alert rules per model, their evaluation, and notification without storms.

Rules are YAML (``RADPILOT_ALERT_RULES``, default ``<data dir>/alerts.yaml``)::

    models:
      - model: chest-pneumonia
        drift: {reference: 200, window: 50}        # one alert per drifted field
        positive_rate: {validated: 0.30, window: 50, max_change: 0.10}
        discordance: {p0: 0.10, p1: 0.20, arl0: 1000}
        latency_p95_seconds: 120                   # received -> result stored
        failed_jobs: {max: 3, hours: 24}

Each cause (``drift:<field>``, ``positive_rate``, ``discordance``, ``latency_p95``,
``failed_jobs``) has at most one unresolved alert per model: while one is open or
acknowledged, a cause that fires again only updates its ``last_seen_at`` and ``seen`` —
no storm. An acknowledged alert is resolved automatically once its cause no longer fires
(audited as ``alert.resolve`` by radpilot); an open one waits for a person. New alerts are
audited (``alert.open``) and sent to ``RADPILOT_ALERT_WEBHOOK`` (JSON POST) and by e-mail
through ``RADPILOT_ALERT_SMTP_HOST`` to ``RADPILOT_ALERT_SMTP_TO`` when set; what each
delivery did is kept on the alert (``notified``).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from radpilot.core.settings import Settings
from radpilot.core.yamlfile import load_yaml_model
from radpilot.governance.audit import AuditLog
from radpilot.monitoring.discordance import Cusum, decision_stream, threshold_for_arl
from radpilot.monitoring.drift import DriftThresholds, rate_drift
from radpilot.monitoring.features import study_features
from radpilot.monitoring.stream import scan
from radpilot.store import Database
from radpilot.store.models import Study, as_utc, utcnow
from radpilot.store.models_alerts import Alert, AlertStatus
from radpilot.store.models_pipeline import Job, JobStatus, ModelVersion, Result

__all__ = ["AlertRules", "Firing", "evaluate", "load_rules", "transition"]

log = logging.getLogger(__name__)


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DriftRule(_Rule):
    reference: int = Field(200, ge=5)
    window: int = Field(50, ge=5)


class RateRule(_Rule):
    validated: float = Field(ge=0.0, le=1.0)
    window: int = Field(50, ge=5)
    max_change: float = Field(0.1, gt=0.0, le=1.0)


class DiscordanceRule(_Rule):
    p0: float = Field(gt=0.0, lt=1.0)
    p1: float | None = Field(None, gt=0.0, lt=1.0)
    arl0: float = Field(1000.0, ge=50)


class FailedJobsRule(_Rule):
    max: int = Field(ge=0)
    hours: float = Field(24.0, gt=0)


class RetrainRule(_Rule):
    """When a new alert opens for the model: assemble a candidate cohort, write its
    training config, and with ``run`` train and register the candidate (``registered``)."""

    min_cases: int = Field(50, ge=10)
    epochs: int = Field(10, ge=1)
    run: bool = False
    since_days: float | None = Field(None, gt=0)  # only studies this recent


class ModelRules(_Rule):
    """The rules of one model (every section optional)."""

    model: str
    drift: DriftRule | None = None
    positive_rate: RateRule | None = None
    discordance: DiscordanceRule | None = None
    latency_p95_seconds: float | None = Field(None, gt=0)
    failed_jobs: FailedJobsRule | None = None
    retrain: RetrainRule | None = None


class AlertRules(BaseModel):
    """The whole rules file."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelRules] = Field(default_factory=list)


def load_rules(path: Path) -> AlertRules:
    """The rules in ``path``; none when there is no file.

    Raises
    ------
    radpilot.core.errors.ManifestError
        If the file is malformed (with the line and field at fault).
    """
    return load_yaml_model(path, AlertRules) if path.exists() else AlertRules()


@dataclass(frozen=True)
class Firing:
    """A cause that fired in this evaluation."""

    model: str
    cause: str
    message: str
    value: float | None = None
    threshold: float | None = None


def _check(session: Session, rules: ModelRules, now: dt.datetime) -> list[Firing]:
    name, found = rules.model, []
    if rules.drift is not None or rules.positive_rate is not None:
        rows = study_features(session, name)
    if rules.drift is not None and len(rows) >= rules.drift.reference + rules.drift.window:
        window = scan(rows, rules.drift.reference, rules.drift.window, rules.drift.window)[-1]
        for f in window.comparison.fields:
            if f.drifted:
                found.append(
                    Firing(
                        name,
                        f"drift:{f.name}",
                        f"{f.name} drifted in the last {rules.drift.window} studies "
                        f"({f.detail or f'effect {f.statistic:.2f}'})",
                        f.statistic,
                    )
                )
    if rules.positive_rate is not None:
        live = [r.positive for r in rows[-rules.positive_rate.window :] if r.positive is not None]
        limits = DriftThresholds(min_rate_change=rules.positive_rate.max_change)
        rate = rate_drift(rules.positive_rate.validated, live, limits.alpha, limits)
        if rate is not None and len(live) >= rules.positive_rate.window and rate.drifted:
            message = (
                f"positive rate {rate.live_rate:.2f} in the last {len(live)} studies "
                f"against {rate.reference_rate:.2f} validated (p={rate.p_value:.2g})"
            )
            found.append(
                Firing(name, "positive_rate", message, rate.live_rate, rate.reference_rate)
            )
    if rules.discordance is not None:
        d = rules.discordance
        rise = d.p1 if d.p1 is not None else min(2 * d.p0, 0.99)
        h = threshold_for_arl(d.p0, rise, d.arl0)
        result = Cusum(d.p0, rise, h).run(decision_stream(session, name))
        if result.alarm_at is not None:
            found.append(
                Firing(
                    name,
                    "discordance",
                    f"radiologists reject or modify more often than {d.p0:.0%} "
                    f"(CUSUM alarm at decision {result.alarm_at}, h={h})",
                    float(result.alarm_at),
                    h,
                )
            )
    if rules.latency_p95_seconds is not None:
        pairs = session.execute(
            select(Study.last_received_at, Result.stored_at)
            .join(Result, Result.study_pk == Study.id)
            .join(ModelVersion, Result.model_version_pk == ModelVersion.id)
            .where(ModelVersion.name == name, Result.stored_at >= now - dt.timedelta(days=1))
        ).all()
        waits = sorted((as_utc(b) - as_utc(a)).total_seconds() for a, b in pairs)
        if waits:
            p95 = waits[min(len(waits) - 1, int(0.95 * len(waits)))]
            if p95 > rules.latency_p95_seconds:
                found.append(
                    Firing(
                        name,
                        "latency_p95",
                        f"p95 received -> result {p95:.0f} s over the last day",
                        p95,
                        rules.latency_p95_seconds,
                    )
                )
    if rules.failed_jobs is not None:
        since = now - dt.timedelta(hours=rules.failed_jobs.hours)
        failed = (
            session.scalar(
                select(func.count(Job.id))
                .join(ModelVersion, Job.model_version_pk == ModelVersion.id)
                .where(
                    ModelVersion.name == name,
                    Job.status == JobStatus.FAILED,
                    Job.finished_at >= since,
                )
            )
            or 0
        )
        if failed > rules.failed_jobs.max:
            found.append(
                Firing(
                    name,
                    "failed_jobs",
                    f"{failed} jobs failed in the last {rules.failed_jobs.hours:g} h",
                    float(failed),
                    float(rules.failed_jobs.max),
                )
            )
    return found


def _mail(settings: Settings, alert: dict[str, Any]) -> dict[str, Any]:
    import smtplib
    from email.message import EmailMessage

    message = EmailMessage()
    message["Subject"] = f"[radpilot] {alert['model']}: {alert['cause']}"
    message["From"] = settings.alert_smtp_from
    message["To"] = ", ".join(settings.alert_smtp_to)
    message.set_content(
        f"{alert['message']}\n\nModel: {alert['model']}\nCause: {alert['cause']}\n"
        f"Opened: {alert['opened_at']}\nAlert: {alert['id']} (acknowledge it on the "
        "governance page)\n"
    )
    assert settings.alert_smtp_host is not None
    try:
        with smtplib.SMTP(settings.alert_smtp_host, settings.alert_smtp_port, timeout=10) as smtp:
            if settings.alert_smtp_starttls:
                smtp.starttls()
            if settings.alert_smtp_user and settings.alert_smtp_password:
                smtp.login(
                    settings.alert_smtp_user, settings.alert_smtp_password.get_secret_value()
                )
            smtp.send_message(message)
        return {"channel": "email", "to": len(settings.alert_smtp_to)}
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("alert %s: e-mail failed (%s)", alert["id"], type(exc).__name__)
        return {"channel": "email", "error": type(exc).__name__}


def _notify(settings: Settings, alert: dict[str, Any]) -> list[dict[str, Any]]:
    outcomes = []
    if settings.alert_webhook:
        try:
            answer = httpx.post(settings.alert_webhook, json=alert, timeout=10.0)
            outcomes.append({"channel": "webhook", "status": answer.status_code})
        except httpx.HTTPError as exc:
            log.warning("alert %s: webhook failed (%s)", alert["id"], type(exc).__name__)
            outcomes.append({"channel": "webhook", "error": type(exc).__name__})
    if settings.alert_smtp_host and settings.alert_smtp_to:
        outcomes.append(_mail(settings, alert))
    return outcomes


def _payload(a: Alert) -> dict[str, Any]:
    return {
        "id": a.id,
        "model": a.model,
        "cause": a.cause,
        "message": a.message,
        "value": a.value,
        "threshold": a.threshold,
        "status": a.status.value,
        "opened_at": as_utc(a.opened_at).isoformat(timespec="seconds"),
    }


def evaluate(
    db: Database, settings: Settings, rules: AlertRules, now: dt.datetime | None = None
) -> list[int]:
    """Run every rule once; open, update or resolve alerts; the ids of new alerts."""
    now = now or utcnow()
    audit = AuditLog(db)
    opened: list[int] = []
    for model_rules in rules.models:
        with db.session() as session:
            firing = {f.cause: f for f in _check(session, model_rules, now)}
            active = {
                a.cause: a
                for a in session.scalars(
                    select(Alert).where(
                        Alert.model == model_rules.model, Alert.status != AlertStatus.RESOLVED
                    )
                )
            }
            for cause, fire in firing.items():
                if cause in active:
                    active[cause].last_seen_at = now
                    active[cause].seen += 1
                    continue
                alert = Alert(
                    model=fire.model,
                    cause=cause,
                    message=fire.message,
                    value=fire.value,
                    threshold=fire.threshold,
                    opened_at=now,
                    last_seen_at=now,
                )
                session.add(alert)
                session.flush()
                audit.append(
                    "alert.open",
                    "radpilot",
                    f"model:{fire.model}",
                    {"alert": alert.id, "cause": cause, "message": fire.message},
                    session=session,
                )
                opened.append(alert.id)
            for cause, alert in active.items():
                if cause not in firing and alert.status is AlertStatus.ACKNOWLEDGED:
                    alert.status, alert.resolved_at = AlertStatus.RESOLVED, now
                    alert.resolved_by = "radpilot"
                    audit.append(
                        "alert.resolve",
                        "radpilot",
                        f"model:{alert.model}",
                        {"alert": alert.id, "cause": cause, "why": "cause cleared"},
                        session=session,
                    )
            session.commit()
    triggered: set[str] = set()
    for alert_id in opened:
        with db.session() as session:
            fresh = session.get(Alert, alert_id)
            assert fresh is not None
            fresh.notified = _notify(settings, _payload(fresh))
            session.commit()
            triggered.add(fresh.model)
    for model_rules in rules.models:
        if model_rules.retrain is not None and model_rules.model in triggered:
            _retrain(db, settings, model_rules, now)
    return opened


def _retrain(db: Database, settings: Settings, rules: ModelRules, now: dt.datetime) -> None:
    from radpilot.core.errors import RadpilotError
    from radpilot.monitoring.retrain import retrain

    rule = rules.retrain
    assert rule is not None
    folder = settings.data_dir / "retraining" / rules.model / now.strftime("%Y%m%dT%H%M%S")
    since = now - dt.timedelta(days=rule.since_days) if rule.since_days else None
    try:
        summary = retrain(
            db,
            settings,
            rules.model,
            folder,
            since=since,
            epochs=rule.epochs,
            run=rule.run,
            min_cases=rule.min_cases,
        )
    except (RadpilotError, OSError, ValueError) as exc:
        log.warning("retraining %s not started: %s", rules.model, exc)
        AuditLog(db).append(
            "retrain.skipped", "radpilot", f"model:{rules.model}", {"reason": str(exc)}
        )
        return
    AuditLog(db).append(
        "retrain.triggered",
        "radpilot",
        f"model:{rules.model}",
        {
            "config": summary["config"],
            "registered": summary["registered"],
            "studies": summary["cohort"]["studies"],
        },
    )


def transition(db: Database, alert_id: int, status: AlertStatus, actor: str) -> Alert:
    """Acknowledge or resolve an alert as ``actor``; audited.

    Raises
    ------
    LookupError
        If there is no such alert.
    ValueError
        If the alert is resolved already, or ``status`` is ``open``.
    """
    with db.session() as session:
        alert = session.get(Alert, alert_id)
        if alert is None:
            raise LookupError(f"no alert {alert_id}")
        if alert.status is AlertStatus.RESOLVED or status is AlertStatus.OPEN:
            raise ValueError(
                f"alert {alert_id} is {alert.status.value}; it cannot become {status.value}"
            )
        now = utcnow()
        if status is AlertStatus.ACKNOWLEDGED:
            alert.acknowledged_by, alert.acknowledged_at = actor, now
        else:
            alert.resolved_by, alert.resolved_at = actor, now
        alert.status = status
        kind = "alert.acknowledge" if status is AlertStatus.ACKNOWLEDGED else "alert.resolve"
        AuditLog(db).append(
            kind,
            actor,
            f"model:{alert.model}",
            {"alert": alert.id, "cause": alert.cause},
            session=session,
        )
        session.commit()
        return alert
