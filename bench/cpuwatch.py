"""CPU time used by *other* processes while a measurement runs.

A benchmark on a shared 2-core machine is only as good as the machine's quiet. This module
reads ``/proc/*/stat`` before and after a measurement and sums the CPU time of processes
that are neither the benchmark nor one of its children (identified by process group) nor
kernel threads (process group 0; they mostly do our own I/O). The result is recorded with
each measurement, and :func:`wait_until_quiet` holds a measurement back while someone
else's tests are running.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from pathlib import Path

__all__ = ["Snapshot", "foreign_cpu_seconds", "snapshot", "wait_until_quiet"]

_TICK = os.sysconf("SC_CLK_TCK")

# pid -> (process group, utime + stime + cutime + cstime in clock ticks)
Snapshot = dict[int, tuple[int, int]]


def snapshot() -> Snapshot:
    """CPU ticks of every process now (processes that vanish while reading are skipped)."""
    result: Snapshot = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:  # the process exited between listing and reading
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        # after "pid (comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt
        # cmajflt utime stime cutime cstime ...
        pgrp = int(fields[2])
        ticks = sum(int(v) for v in fields[11:15])
        result[int(entry.name)] = (pgrp, ticks)
    return result


def foreign_cpu_seconds(before: Snapshot, after: Snapshot, ours: Collection[int]) -> float:
    """CPU seconds used between two snapshots by processes outside the groups in `ours`."""
    ticks = 0
    for pid, (pgrp, now) in after.items():
        if pgrp == 0 or pgrp in ours:
            continue
        previous = before.get(pid)
        ticks += now - previous[1] if previous is not None and previous[0] == pgrp else now
    return ticks / _TICK


def wait_until_quiet(
    ours: Collection[int], *, max_busy: float = 0.1, window: float = 1.0, limit: float = 120.0
) -> float:
    """Wait until other processes use at most `max_busy` CPUs over `window` seconds.

    Returns the seconds waited; gives up (and returns) after `limit` seconds.
    """
    started = time.monotonic()
    while True:
        before = snapshot()
        time.sleep(window)
        busy = foreign_cpu_seconds(before, snapshot(), ours) / window
        waited = time.monotonic() - started
        if busy <= max_busy or waited >= limit:
            return waited
