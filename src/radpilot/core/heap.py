"""Keep Python's cyclic garbage collector off the objects a service builds at start-up.

A started ``radpilot serve`` holds about 650,000 objects tracked by the collector
(pydicom's dictionaries, SQLAlchemy's mappers, FastAPI, PyTorch, the loaded models), and
they live as long as the process. Every full (generation 2) collection walks all of them:
in one C-STORE run of 300 CT slices the process spent 0.9 s in 9 full collections, up to
0.2 s each, and an image arriving during one waits for it (measured with ``gc.callbacks``;
the effect on C-STORE throughput is in BENCHMARKS.md). :func:`gc.freeze` moves every
object tracked so far into a permanent generation that collections skip; objects created
afterwards are collected as before. The cost: a frozen object that later becomes cyclic
garbage is never reclaimed, which is why this is called once start-up is done, not on a
running service's working data.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["freeze_startup_heap"]

log = logging.getLogger(__name__)


def freeze_startup_heap(stage: str) -> int:
    """Collect once, then freeze what is left; returns how many objects are now frozen.

    ``stage`` names the point of start-up in the log line (e.g. ``"after warm-up"``).
    """
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("froze %d start-up objects %s", frozen, stage)
    return frozen
