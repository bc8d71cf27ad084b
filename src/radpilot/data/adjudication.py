"""One label from several reads: each reader's latest read is one vote, the majority wins,
a tie decides nothing. Used by training (the index's cohort), validation (label files) and
the readers analysis, so that all three adjudicate alike."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

__all__ = ["latest_reads", "majority_vote"]

_OLDEST = dt.datetime.min.replace(tzinfo=dt.UTC)


def _aware(at: dt.datetime | None) -> dt.datetime:
    if at is None:
        return _OLDEST  # a read without a time is older than any timed read
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)  # the index stores UTC, naive


def latest_reads(reads: Iterable[tuple[str, dt.datetime | None, int]]) -> dict[str, int]:
    """``reader -> value`` of each reader's latest ``(reader, read_at, value)`` read; of
    two reads at the same time, the later one in ``reads`` counts."""
    latest: dict[str, tuple[dt.datetime, int]] = {}
    for reader, at, value in reads:
        when = _aware(at)
        if reader not in latest or when >= latest[reader][0]:
            latest[reader] = (when, 1 if value else 0)
    return {reader: value for reader, (_, value) in latest.items()}


def majority_vote(votes: Iterable[int]) -> int | None:
    """1 or 0 by majority of ``votes``; None on a tie (or no vote)."""
    values = list(votes)
    positive, negative = values.count(1), values.count(0)
    return None if positive == negative else int(positive > negative)
