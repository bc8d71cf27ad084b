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

import numpy as np
import pytest
from typer.testing import CliRunner

from radpilot.data.synth_common import Variation
from radpilot.data.synth_perturb import PerturbationSpec
from radpilot.data.synth_tables import Drift
from radpilot.monitoring.drift import (
    DriftThresholds,
    FieldDrift,
    categorical_drift,
    compare,
    embedding_drift,
    mmd_test,
    numeric_drift,
    psi,
)
from radpilot.monitoring.features import StudyFeatures, study_features
from radpilot.monitoring.stream import Window, first_alarm, scan
from tests.conftest import SHARED_DATA, missing

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


def test_mmd_is_the_unbiased_estimate_and_its_p_value_is_calibrated() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(30, 5)), rng.normal(0.5, size=(12, 5))
    pooled = np.vstack([x, y])
    squared = ((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(axis=2)
    kernel = np.exp(-squared / np.median(squared[np.triu_indices(42, k=1)]))
    kxx, kyy, kxy = kernel[:30, :30], kernel[30:, 30:], kernel[:30, 30:]
    by_definition = (
        (kxx.sum() - 30) / (30 * 29) + (kyy.sum() - 12) / (12 * 11) - 2 * kxy.mean()
    )  # Gretton et al. 2012, eq. 3, with the median-distance bandwidth
    value, p_value = mmd_test(x, y)
    assert value == pytest.approx(by_definition, rel=1e-9)
    assert 0 < p_value < 0.05
    nulls = [
        mmd_test(rng.normal(size=(40, 8)), rng.normal(size=(15, 8)), max_permutations=300)[1]
        for _ in range(200)
    ]
    assert 0.04 <= np.mean(np.array(nulls) < 0.1) <= 0.17  # Binomial(200, 0.1) +- 3 SD
    far, floor = mmd_test(rng.normal(size=(60, 8)), rng.normal(1.0, size=(20, 8)), 0.001)
    assert far > 0.1 and floor == pytest.approx(1 / 5001)  # never 0: (1 + 0) / (1 + B)
    with pytest.raises(ValueError, match="equal-width"):
        mmd_test(x, rng.normal(size=(10, 4)))


def _with_embeddings(vectors: np.ndarray, version: str = "1.0.0") -> list[StudyFeatures]:
    return [StudyFeatures(i, None, version=version, embedding=v) for i, v in enumerate(vectors)]  # type: ignore[arg-type]


def test_embedding_drift_compares_one_model_version() -> None:
    rng = np.random.default_rng(5)
    reference = _with_embeddings(rng.normal(size=(60, 16)).astype(np.float32))
    same = _with_embeddings(rng.normal(size=(30, 16)).astype(np.float32))
    moved = _with_embeddings(rng.normal(0.8, size=(30, 16)).astype(np.float32))
    quiet = embedding_drift(reference, same, 0.01 / 25, LIMITS)
    assert quiet is not None and not quiet.drifted and quiet.kind == "embedding"
    fired = embedding_drift(reference, moved, 0.01 / 25, LIMITS)
    assert fired is not None and fired.drifted and fired.statistic >= LIMITS.min_mmd
    assert "16 dimensions, version 1.0.0" in fired.detail
    assert "embedding" in compare(reference, moved).drifted
    other = _with_embeddings(rng.normal(0.8, size=(30, 16)).astype(np.float32), "2.0.0")
    assert embedding_drift(reference, other, 0.01, LIMITS) is None  # another space: untested
    assert "embedding" not in compare(reference, other).drifted


@pytest.mark.slow
def test_drift_stream_through_dicom(tmp_path: Path) -> None:
    if not NPZ.is_file():
        missing(f"PneumoniaMNIST not found under {SHARED_DATA}")
    from radpilot.pipeline import demo as loop

    baseline = loop.make_studies(NPZ, tmp_path / "base", 100, 0.3, seed="stream-base", size=256)
    changed = loop.make_studies(
        NPZ, tmp_path / "drift", 40, 0.8, seed="stream-drift", size=256,
        variation=Variation(True, Drift.NEW_SCANNER, (PerturbationSpec.parse("contrast=0.5"),)),
    )  # fmt: skip
    for part in (baseline, changed):  # a stationary mix within each part
        random.Random(7).shuffle(part)
    run = loop.replay(tmp_path, [baseline, changed], REPO / "models/reference/package")
    settings, version = run.settings, run.version
    with run.db.session() as session:
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


@pytest.mark.slow
def test_embedding_drift_stream_through_dicom(tmp_path: Path) -> None:
    """Collimation tightens (each image cropped to 80 % of its side) at an unchanged
    positive rate: the network's embedding moves. The changed studies are other patients
    (the validation split) than the unchanged ones (the test split). Windows of 40 against
    a reference of 60: the embedding's MMD is a detector for windows of that size
    (BENCHMARKS.md)."""
    if not NPZ.is_file():
        missing(f"PneumoniaMNIST not found under {SHARED_DATA}")
    from radpilot.pipeline import demo as loop

    baseline = loop.make_studies(NPZ, tmp_path / "base", 120, 0.3, seed="emb-base", size=256,
                                 draw="emb-base")  # fmt: skip
    changed = loop.make_studies(
        NPZ, tmp_path / "crop", 60, 0.3, seed="emb-crop", size=256, split="val", draw="emb-crop",
        variation=Variation(True, None, (PerturbationSpec.parse("crop=0.8"),)),
    )  # fmt: skip
    run = loop.replay(tmp_path, [baseline, changed], REPO / "models/reference/package")
    version = run.version
    with run.db.session() as session:
        rows = study_features(session, version.name)
    assert len(rows) == 180
    assert all(r.embedding is not None and r.embedding.shape == (184,) for r in rows)
    assert {r.version for r in rows} == {version.version}
    windows = scan(rows, reference_size=60, window=40, step=5)

    def embedding(w: Window) -> FieldDrift:
        return next(f for f in w.comparison.fields if f.name == "embedding")

    before = [w for w in windows if w.end <= 120]
    assert len(before) == 5 and not any(embedding(w).drifted for w in before)
    fired = next((w for w in windows if embedding(w).drifted), None)
    assert fired is not None, [(w.end, embedding(w).p_value) for w in windows]
    assert 0 < fired.end - 120 <= 40, fired.end  # within the documented delay
    inside = [w for w in windows if w.start >= 120]  # every study of the window changed
    assert inside and all(embedding(w).drifted for w in inside)
    assert min(embedding(w).statistic for w in inside) > 3 * max(
        embedding(w).statistic for w in before
    )
