"""A live run for monitoring and governance tests: radpilot with the reference model
active reads PneumoniaMNIST studies sent by C-STORE, as `make demo` does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from radpilot.core.settings import Settings
from radpilot.store.models_pipeline import ModelVersion
from tests.conftest import SHARED_DATA, free_port, missing

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
    from radpilot.dicom.scu import send_files
    from radpilot.pipeline import demo as loop
    from radpilot.pipeline.service import Service

    settings = Settings(
        data_dir=root / "data",
        dicom_port=free_port(),
        http_port=0,
        study_quiet_seconds=1.0,
        explain=explain,
        fsync=False,
        min_free_disk_mb=0,
    )
    service = Service(settings, web=False)
    service.db.migrate()
    version = loop.install_model(service.db, settings, REPO / "models/reference/package")
    loop.write_rules(settings, version.name)
    made = loop.make_studies(NPZ, root / "studies", count, positive_rate, seed=seed, size=size)
    truth = [c.label for c in choose_cases(NPZ, "test", count, positive_rate)]
    service.start()
    try:
        send_files(
            [p for p, _ in made],
            "127.0.0.1",
            service.receiver.port,
            called_ae_title=settings.ae_title,
        )
        loop.wait_for_results(service.db, [uid for _, uid in made], timeout=300)
    finally:
        service.stop()
    return LiveRun(settings, version, made, truth)
