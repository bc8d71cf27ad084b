"""Sequential detection of rising discordance between the model and the radiologists.

Each decision on a visible result is one Bernoulli observation: discordant when the
radiologist rejected or modified the AI result, concordant when they accepted it. A
Bernoulli CUSUM (Reynolds & Stoumbos 1999) accumulates the log-likelihood ratio of an
out-of-control rate ``p1`` against the in-control rate ``p0``::

    S_t = max(0, S_{t-1} + x_t ln(p1/p0) + (1 - x_t) ln((1-p1)/(1-p0)))

and alarms when ``S_t`` exceeds ``h``. The threshold is chosen for a target in-control
average run length (ARL0, the mean number of decisions between false alarms when nothing
changed) by simulation (:func:`threshold_for_arl`), so the false-alarm rate is a stated
number: with the default ARL0 of 1,000 decisions, about one false alarm per 1,000
decisions. ``p0`` is the discordance measured in a reference period (or pilot); ``p1``
defaults to twice it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from radpilot.store.models_pipeline import Decision, Feedback, ModelVersion, Result

__all__ = ["Cusum", "CusumResult", "arl", "decision_stream", "threshold_for_arl"]


@dataclass(frozen=True)
class CusumResult:
    """The statistic after every observation and the first alarm (1-based), if any."""

    statistic: list[float]
    alarm_at: int | None
    h: float


@dataclass(frozen=True)
class Cusum:
    """A Bernoulli CUSUM for a rise from ``p0`` to ``p1`` with threshold ``h``."""

    p0: float
    p1: float
    h: float

    def __post_init__(self) -> None:
        if not 0 < self.p0 < self.p1 < 1:
            raise ValueError(f"need 0 < p0 < p1 < 1, got p0={self.p0}, p1={self.p1}")
        if self.h <= 0:
            raise ValueError("h must be positive")

    @property
    def steps(self) -> tuple[float, float]:
        """What a discordant and a concordant observation add."""
        return (math.log(self.p1 / self.p0), math.log((1 - self.p1) / (1 - self.p0)))

    def run(self, discordant: Sequence[bool]) -> CusumResult:
        """The statistic over ``discordant`` (in decision order); it restarts at 0 after
        an alarm, as a monitor does once the alarm is handled."""
        up, down = self.steps
        s, values, alarm = 0.0, [], None
        for index, x in enumerate(discordant, start=1):
            s = max(0.0, s + (up if x else down))
            values.append(s)
            if s > self.h and alarm is None:
                alarm = index
                s = 0.0
        return CusumResult(values, alarm, self.h)


def arl(
    p0: float,
    p1: float,
    h: float,
    rate: float,
    runs: int = 400,
    seed: int = 0,
    limit: int = 200_000,
) -> float:
    """The mean number of observations to the first alarm when the true discordance is
    ``rate`` (ARL0 when ``rate == p0``), by simulation; runs longer than ``limit`` count
    as ``limit``."""
    up, down = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    rng = np.random.default_rng(seed)
    lengths = []
    block = 4096
    for _ in range(runs):
        s, n = 0.0, 0
        while n < limit:
            xs = rng.random(block) < rate
            incr = np.where(xs, up, down)
            hit = False
            for value in incr:  # the recursion is sequential; blocks only batch the draws
                n += 1
                s = max(0.0, s + value)
                if s > h:
                    hit = True
                    break
            if hit:
                break
        lengths.append(min(n, limit))
    return float(np.mean(lengths))


def threshold_for_arl(
    p0: float, p1: float, target: float = 1000.0, runs: int = 300, seed: int = 0
) -> float:
    """The smallest ``h`` (to 0.05) whose simulated ARL0 reaches ``target``, by bisection."""
    low, high = 0.05, 20.0
    while high - low > 0.05:
        mid = (low + high) / 2
        if arl(p0, p1, mid, p0, runs=runs, seed=seed, limit=int(target * 20)) >= target:
            high = mid
        else:
            low = mid
    return round(high, 2)


def decision_stream(session: Session, model: str) -> list[bool]:
    """Discordant (modify or reject) or not, for every decision on a visible result of
    ``model``, in decision order."""
    query = (
        select(Feedback.decision)
        .join(Result, Feedback.result_pk == Result.id)
        .join(ModelVersion, Result.model_version_pk == ModelVersion.id)
        .where(ModelVersion.name == model, Result.visible.is_(True))
        .order_by(Feedback.decided_at, Feedback.id)
    )
    return [decision is not Decision.ACCEPT for decision in session.scalars(query)]
