"""Sign-in attempt limits: a sliding window of failures per user name and per client.

In memory, per process: ``radpilot serve`` runs one web process, and a restart forgetting
the window is acceptable (the limit slows guessing down; it is not the only defence — the
passwords are argon2-hashed and at least ten characters long). Several web processes
behind a balancer would each keep their own window; a shared store (Redis) would then be
the next step.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

__all__ = ["SignInLimiter"]


class SignInLimiter:
    """At most ``max_failures`` failed sign-ins per key within ``window`` seconds."""

    def __init__(
        self, max_failures: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def retry_after(self, keys: Iterable[str]) -> int | None:
        """Seconds to wait when any key is over its limit, else None."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                if len(times) >= self.max_failures:
                    wait = max(wait, times[0] + self.window - now)
                if not times:
                    self._failures.pop(key, None)
        return max(1, math.ceil(wait)) if wait > 0 else None

    def failed(self, keys: Iterable[str]) -> None:
        """Count one failure against every key."""
        now = self._clock()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, key: str) -> None:
        """Forget a key's failures (a correct password for that user)."""
        with self._lock:
            self._failures.pop(key, None)
