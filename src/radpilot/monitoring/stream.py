"""Rolling windows of live traffic against a reference window, in arrival order.

The reference is the first ``reference_size`` studies of the stream (or any list the
caller chooses, e.g. the studies of the model's validation). Live windows of ``window``
studies end every ``step`` studies after it; each is compared with
:func:`radpilot.monitoring.drift.compare`. The first window with a drifted field is the
alarm; ``studies_seen`` says how many live studies had arrived by then, which is what the
detection delay in BENCHMARKS.md counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from radpilot.monitoring.drift import Comparison, DriftThresholds, compare
from radpilot.monitoring.features import StudyFeatures

__all__ = ["Window", "first_alarm", "scan"]


@dataclass(frozen=True)
class Window:
    """One live window and its comparison with the reference."""

    start: int  # index of the first live study, counted from the start of the stream
    end: int  # one past the last
    studies_seen: int  # live studies up to the end of this window
    comparison: Comparison

    @property
    def drifted(self) -> list[str]:
        """What drifted in this window."""
        return self.comparison.drifted


def scan(
    rows: Sequence[StudyFeatures],
    reference_size: int,
    window: int,
    step: int = 1,
    limits: DriftThresholds | None = None,
    validated_rate: float | None = None,
) -> list[Window]:
    """Every live window after the reference, in order.

    Raises
    ------
    ValueError
        If the sizes are not positive or the stream is shorter than the reference.
    """
    if reference_size < 1 or window < 1 or step < 1:
        raise ValueError("reference size, window and step must be at least 1")
    if len(rows) < reference_size:
        raise ValueError(
            f"the stream has {len(rows)} studies, fewer than the reference window "
            f"({reference_size})"
        )
    reference = rows[:reference_size]
    windows = []
    for end in range(reference_size + window, len(rows) + 1, step):
        live = rows[end - window : end]
        windows.append(
            Window(
                end - window,
                end,
                end - reference_size,
                compare(reference, live, limits, validated_rate),
            )
        )
    return windows


def first_alarm(windows: Sequence[Window]) -> Window | None:
    """The first window where something drifted."""
    return next((w for w in windows if w.drifted), None)
