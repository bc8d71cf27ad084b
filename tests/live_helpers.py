"""A live run for monitoring and governance tests: radpilot with the reference model
active reads PneumoniaMNIST studies sent by C-STORE, as `make demo` does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from radpilot.core.settings import Settings
from radpilot.store.models_pipeline import ModelVersion
from tests.conftest import SHARED_DATA, missing

NPZ = SHARED_DATA / "pneumoniamnist" / "pneumoniamnist.npz"
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class LiveRun:
    """What the run left: its settings, the active version, the studies sent (file and
    Study Instance UID, in PneumoniaMNIST order) and their true labels."""

    settings: Settings
    version: ModelVersion
    made: list[tuple[Path, str]]
    truth: list[int]


def live_run(
    root: Path,
    count: int,
    positive_rate: float,
    seed: str,
    *,
    size: int = 256,
    explain: bool = True,
) -> LiveRun:
    """Start radpilot, activate the reference model, send ``count`` studies, wait for
    every result, stop."""
    if not NPZ.is_file():
        missing(f"PneumoniaMNIST not found under {SHARED_DATA}")
    from radpilot.data.synth import choose_cases
    from radpilot.pipeline import demo as loop

    made = loop.make_studies(NPZ, root / "studies", count, positive_rate, seed=seed, size=size)
    truth = [c.label for c in choose_cases(NPZ, "test", count, positive_rate)]
    run = loop.replay(root, [made], REPO / "models/reference/package", explain=explain)
    return LiveRun(run.settings, run.version, made, truth)
