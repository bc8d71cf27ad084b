"""Drift monitoring (issue 7): the statistics on known cases, and a replayed stream.

The stream goes through the real DICOM path: PneumoniaMNIST radiographs wrapped by the
demo's synth, sent by C-STORE into a running radpilot with the reference model active.
Part-way, a scanner never seen before appears, the image contrast drops and the positive
rate rises. The detectors must stay quiet over the unchanged part and fire within 30
studies of the change; `radpilot monitor drift` must say so.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from radpilot.core.settings import Settings
from radpilot.data.synth_common import Variation
from radpilot.data.synth_perturb import PerturbationSpec
from radpilot.data.synth_tables import Drift
from radpilot.monitoring.drift import (
    DriftThresholds,
    categorical_drift,
    compare,
    numeric_drift,
    psi,
)
from radpilot.monitoring.features import StudyFeatures, study_features
from radpilot.monitoring.stream import first_alarm, scan
from tests.conftest import SHARED_DATA, free_port, missing

NPZ = SHARED_DATA / "pneumoniamnist" / "pneumoniamnist.npz"
REPO = Path(__file__).resolve().parents[1]
LIMITS = DriftThresholds()


def test_categorical_statistics() -> None:
    same = ["GE"] * 50 + ["Siemens"] * 50
    assert psi(same, same) == pytest.approx(0.0)
    quiet = categorical_drift("manufacturer", same, ["GE"] * 26 + ["Siemens"] * 24, 0.01, LIMITS)
    assert not quiet.drifted and quiet.p_value > 0.5
    new = categorical_drift("manufacturer", same, ["GE"] * 20 + ["Canon"] * 3 + [None] * 2,
                            0.01, LIMITS)  # fmt: skip
    assert new.drifted and new.new_categories == {"Canon": 3} and "new: Canon (3)" in new.detail
    rare = categorical_drift("manufacturer", same, ["GE", "Siemens"] * 10 + ["Canon"] * 2,
                             0.01 / 20, LIMITS)  # fmt: skip  # alpha as compare() corrects it
    assert not rare.drifted and rare.new_categories == {"Canon": 2}  # two are not yet a scanner
    shifted = categorical_drift("manufacturer", same, ["GE"] * 45 + ["Siemens"] * 5, 0.01, LIMITS)
    assert shifted.drifted and shifted.statistic > 0.2 and shifted.p_value < 1e-4


def test_numeric_statistics() -> None:
    rng = random.Random(3)
    reference = [rng.gauss(0, 1) for _ in range(200)]
    quiet = numeric_drift("input_mean", reference, [rng.gauss(0, 1) for _ in range(50)],
                          0.01, LIMITS)  # fmt: skip
    assert quiet is not None and not quiet.drifted
    moved = numeric_drift("input_mean", reference, [rng.gauss(1, 1) for _ in range(50)],
                          0.01, LIMITS)  # fmt: skip
    assert moved is not None and moved.drifted and moved.statistic == pytest.approx(1, abs=0.3)
    assert numeric_drift("kvp", reference, [1.0] * 5, 0.01, LIMITS) is None  # too few values
    constant = numeric_drift("kvp", [100.0] * 20, [120.0] * 20, 0.01, LIMITS)
    assert constant is not None and constant.drifted


def test_positive_rate_against_the_validated_rate() -> None:
    rows = [StudyFeatures(i, None, positive=i % 10 < 3) for i in range(100)]  # type: ignore[arg-type]
    ok = compare(rows[:50], rows[50:], validated_rate=0.3)
    assert ok.rate is not None and not ok.rate.drifted and ok.rate.live_rate == pytest.approx(0.3)
    high = [StudyFeatures(i, None, positive=i % 10 < 8) for i in range(50)]  # type: ignore[arg-type]
    up = compare(rows[:50], high, validated_rate=0.3)
    assert up.rate is not None and up.rate.drifted and "positive_rate" in up.drifted


@pytest.mark.slow
def test_drift_stream_through_dicom(tmp_path: Path) -> None:
    if not NPZ.is_file():
        missing(f"PneumoniaMNIST not found under {SHARED_DATA}")
    from radpilot.dicom.scu import send_files
    from radpilot.pipeline import demo as loop
    from radpilot.pipeline.service import Service

    settings = Settings(
        data_dir=tmp_path / "data", dicom_port=free_port(), http_port=0, study_quiet_seconds=1.0,
        explain=False, fsync=False, min_free_disk_mb=0,
    )  # fmt: skip
    service = Service(settings, web=False)
    service.db.migrate()
    version = loop.install_model(service.db, settings, REPO / "models/reference/package")
    loop.write_rules(settings, version.name)
    baseline = loop.make_studies(NPZ, tmp_path / "base", 100, 0.3, seed="stream-base", size=256)
    changed = loop.make_studies(
        NPZ, tmp_path / "drift", 40, 0.8, seed="stream-drift", size=256,
        variation=Variation(True, Drift.NEW_SCANNER, (PerturbationSpec.parse("contrast=0.5"),)),
    )  # fmt: skip
    for part in (baseline, changed):  # a stationary mix within each part
        random.Random(7).shuffle(part)
    service.start()
    try:
        for part in (baseline, changed):  # in order: the change comes part-way
            report = send_files([p for p, _ in part], "127.0.0.1", service.receiver.port,
                                called_ae_title=settings.ae_title)  # fmt: skip
            assert report.succeeded == len(part)
            loop.wait_for_results(service.db, [uid for _, uid in part], timeout=300)
    finally:
        service.stop()
    with service.db.session() as session:
        rows = study_features(session, version.name)
    assert len(rows) == 140
    assert all(r.numeric["input_mean"] is not None for r in rows)
    windows = scan(rows, reference_size=60, window=20, step=2)
    before = [w for w in windows if w.end <= 100]
    assert before and not any(w.drifted for w in before), [w.drifted for w in before if w.drifted]
    alarm = first_alarm(windows)
    assert alarm is not None
    delay = alarm.end - 100  # drifted studies seen when it fired
    assert 0 < delay <= 30, (delay, alarm.drifted)
    last = windows[-1].drifted
    assert "scanner_model" in last and "positive_rate" in last
    assert {"input_low", "input_high"} & set(last), last  # the contrast change

    from radpilot.cli.main import _register, app

    _register()
    result = CliRunner().invoke(
        app,
        ["--data-dir", str(settings.data_dir), "monitor", "drift", "--model", version.name,
         "--reference", "60", "--window", "20", "--step", "2", "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 3, result.output
    body = json.loads(result.output)
    assert body["first_alarm"]["studies_seen"] == alarm.studies_seen
    fields = {f["field"]: f for f in body["latest"]["fields"]}
    assert fields["scanner_model"]["drifted"] and fields["scanner_model"]["new_categories"]
    assert body["latest"]["positive_rate"]["drifted"] is True
