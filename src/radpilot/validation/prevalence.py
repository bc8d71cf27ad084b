"""What a test's sensitivity and specificity mean at the prevalence a department sees.

The PPV and NPV measured on a validation set hold only at that set's prevalence. At a
declared deployment prevalence ``p``:

- ``PPV = Se p / (Se p + (1 - Sp)(1 - p))`` and ``NPV = Sp (1 - p) / (Sp (1 - p) + (1 - Se) p)``,
  with the adjusted-logit 95% CI of Mercaldo, Lau and Zhou (Stat Med 2007; 26:2170): on
  the logit scale ``logit PPV = logit p + log(Se / (1 - Sp))``, whose variance from the
  two independent binomials is ``(1 - Se) / (n1 Se) + Sp / (n0 (1 - Sp))``; where Se or
  Sp is 0 or 1, both are replaced by ``(x + z²/2) / (n + z²)`` for the interval.
- Per 10,000 scans: missed positives ``10,000 p (1 - Se)`` and false alarms ``10,000
  (1 - p)(1 - Sp)``, whose CIs are the Wilson intervals of Se and Sp carried through
  these (monotone) formulas; ``p`` is declared, not estimated, so it adds no uncertainty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from radpilot.validation.stats import Z95, Estimate, wilson

__all__ = ["AtPrevalence", "at_prevalence"]

PER = 10_000


@dataclass(frozen=True)
class AtPrevalence:
    """PPV, NPV and per-10,000 counts at a declared prevalence."""

    prevalence: float
    ppv: Estimate
    npv: Estimate
    missed_per_10000: Estimate
    false_alarms_per_10000: Estimate
    flagged_per_10000: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "prevalence": self.prevalence,
            "ppv": self.ppv.to_dict(),
            "npv": self.npv.to_dict(),
            "missed_per_10000": self.missed_per_10000.to_dict(),
            "false_alarms_per_10000": self.false_alarms_per_10000.to_dict(),
            "flagged_per_10000": self.flagged_per_10000,
        }


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0


def _logit_interval(centre: float, var: float) -> tuple[float, float]:
    half = Z95 * math.sqrt(var)
    return _expit(centre - half), _expit(centre + half)


def at_prevalence(tp: int, fn: int, tn: int, fp: int, prevalence: float) -> AtPrevalence:
    """PPV, NPV (adjusted-logit CIs) and per-10,000 counts at ``prevalence``.

    Raises
    ------
    ValueError
        If ``prevalence`` is not strictly between 0 and 1, or a class has no cases.
    """
    if not 0.0 < prevalence < 1.0:
        raise ValueError(f"prevalence must be between 0 and 1 (exclusive), not {prevalence}")
    n1, n0 = tp + fn, tn + fp
    if n1 == 0 or n0 == 0:
        raise ValueError("predictive values need positive and negative cases")
    se, sp = tp / n1, tn / n0
    p = prevalence
    ppv = se * p / (se * p + (1 - sp) * (1 - p)) if se * p + (1 - sp) * (1 - p) else math.nan
    npv = sp * (1 - p) / (sp * (1 - p) + (1 - se) * p) if sp * (1 - p) + (1 - se) * p else math.nan
    # the interval: adjusted where a proportion sits on 0 or 1 (the logit is infinite there)
    z2 = Z95**2
    if tp in (0, n1) or tn in (0, n0):
        se_a, sp_a = (tp + z2 / 2) / (n1 + z2), (tn + z2 / 2) / (n0 + z2)
        m1, m0 = n1 + z2, n0 + z2
    else:
        se_a, sp_a, m1, m0 = se, sp, float(n1), float(n0)
    logit_p = math.log(p / (1 - p))
    ppv_centre = logit_p + math.log(se_a / (1 - sp_a))
    ppv_var = (1 - se_a) / (m1 * se_a) + sp_a / (m0 * (1 - sp_a))
    npv_centre = -logit_p + math.log(sp_a / (1 - se_a))
    npv_var = se_a / (m1 * (1 - se_a)) + (1 - sp_a) / (m0 * sp_a)
    n = n1 + n0
    ppv_ci, npv_ci = _logit_interval(ppv_centre, ppv_var), _logit_interval(npv_centre, npv_var)
    sens, spec = wilson(tp, n1), wilson(tn, n0)
    missed = Estimate(PER * p * (1 - se), PER * p * (1 - sens.high), PER * p * (1 - sens.low),
                      "Wilson (sensitivity)", n1)  # fmt: skip
    alarms = Estimate(
        PER * (1 - p) * (1 - sp),
        PER * (1 - p) * (1 - spec.high),
        PER * (1 - p) * (1 - spec.low),
        "Wilson (specificity)",
        n0,
    )
    return AtPrevalence(
        prevalence=p,
        ppv=Estimate(ppv, *ppv_ci, "adjusted logit (Mercaldo 2007)", n),
        npv=Estimate(npv, *npv_ci, "adjusted logit (Mercaldo 2007)", n),
        missed_per_10000=missed,
        false_alarms_per_10000=alarms,
        flagged_per_10000=PER * (p * se + (1 - p) * (1 - sp)),
    )
