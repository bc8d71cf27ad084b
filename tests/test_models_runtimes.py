"""The three runtimes on the same network, and networks that misbehave."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file

from radpilot.core.errors import ModelError
from radpilot.models.inference import load_model
from radpilot.models.package import ModelPackage
from radpilot.models.prediction import Prediction
from radpilot.models.preprocess import prepare
from tests import model_factory as mf

WEIGHTS = {"torchscript": "model.pt", "onnx": "model.onnx", "monai_bundle": "models/model.pt"}
CLASSIFIER_ARGS = {"in_shape": [1, 32, 32], "classes": 2, "channels": [4, 8], "strides": [2, 2]}


def classifier(folder: Path, runtime: str) -> Path:
    """MONAI's Classifier with seed-0 weights, saved for ``runtime``."""
    manifest = mf.manifest_dict(
        "chest", "classification", runtime, WEIGHTS[runtime], ["normal", "pneumonia"], [32, 32]
    )
    manifest["output"]["operating_points"] = [
        {"name": "screening", "label": "pneumonia", "threshold": 0.2},
        {"name": "confirm", "label": "normal", "threshold": 0.99},
    ]
    manifest["output"]["critical_findings"] = ["pneumonia"]
    return mf.package(
        folder / runtime,
        mf.classifier_network(),
        manifest,
        bundle_target="monai.networks.nets.Classifier",
        bundle_args=CLASSIFIER_ARGS,
    )


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("classifiers")
    return {runtime: classifier(folder, runtime) for runtime in WEIGHTS}


def studies() -> list[list[pydicom.Dataset]]:
    """Real images: a CT slice, an MR slice, and a 10-frame MR."""
    names = ("CT_small.dcm", "MR_small.dcm", "emri_small.dcm")
    return [[pydicom.dcmread(get_testdata_file(name))] for name in names]


def scores(prediction: Prediction) -> dict[str, float]:
    return {f.label: f.score for f in prediction.findings}


def test_three_runtimes_agree(classifiers: dict[str, Path]) -> None:
    network = mf.classifier_network().eval()
    results = {}
    for runtime, path in classifiers.items():
        model = load_model(ModelPackage.open(path), explain=False)
        results[runtime] = [model.predict(study) for study in studies()]
    for index, study in enumerate(studies()):
        reference = scores(results["torchscript"][index])
        for runtime in ("onnx", "monai_bundle"):
            other = scores(results[runtime][index])
            assert other.keys() == reference.keys()
            for label, value in reference.items():
                assert abs(other[label] - value) < 1e-4, (runtime, label)
        # and the scores are what the network itself says on the same input
        model = load_model(ModelPackage.open(classifiers["torchscript"]), explain=False)
        samples = [s.array for s in prepare(study, model.manifest.input)]
        with torch.inference_mode():
            probs = torch.sigmoid(network(torch.from_numpy(np.stack(samples)))).numpy()
        for column, label in enumerate(["normal", "pneumonia"]):
            assert abs(reference[label] - float(probs[:, column].max())) < 1e-5


def test_operating_points_and_critical_findings(classifiers: dict[str, Path]) -> None:
    model = load_model(ModelPackage.open(classifiers["onnx"]), explain=False)
    prediction = model.predict(studies()[0])
    by_label = {f.label: f for f in prediction.findings}
    pneumonia, normal = by_label["pneumonia"], by_label["normal"]
    assert pneumonia.operating_point == "screening" and pneumonia.threshold == 0.2
    assert pneumonia.positive is (pneumonia.score >= 0.2)
    assert pneumonia.critical is pneumonia.positive
    assert normal.operating_point == "confirm" and normal.positive is (normal.score >= 0.99)
    assert normal.critical is False  # not listed as critical
    assert prediction.headline == prediction.findings[0]


def test_batch_equals_one_by_one(classifiers: dict[str, Path]) -> None:
    model = load_model(ModelPackage.open(classifiers["torchscript"]), explain=False)
    calls: list[int] = []
    forward = model.network.forward

    def counting(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return forward(batch)

    model.network.forward = counting  # type: ignore[method-assign]
    batched = model.predict_batch(studies())
    assert calls == [12], "one forward pass for 1 + 1 + 10 images"
    single = [model.predict(study) for study in studies()]
    for a, b in zip(batched, single, strict=True):
        assert scores(a) == pytest.approx(scores(b), abs=1e-6)
        assert a.key_image == b.key_image and a.images == b.images
    frames = batched[2].images
    assert [image.frame for image in frames] == list(range(1, 11))
    assert len({image.sop_instance_uid for image in frames}) == 1


def test_onnx_with_a_fixed_batch_of_one(tmp_path: Path) -> None:
    network = mf.classifier_network().eval()
    folder = classifier(tmp_path, "onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (torch.rand(1, 1, 32, 32),), str(folder / "model.onnx"),
                          dynamo=False, input_names=["image"])  # fmt: skip
    model = load_model(ModelPackage.open(folder), explain=False)
    assert model.network.fixed_batch == 1  # type: ignore[attr-defined]
    batched = model.predict_batch(studies())
    reference = load_model(ModelPackage.open(classifier(tmp_path / "b", "onnx")), explain=False)
    for a, b in zip(batched, reference.predict_batch(studies()), strict=True):
        assert scores(a) == pytest.approx(scores(b), abs=1e-5)


def misbehaving(folder: Path, module: torch.nn.Module, script: bool = True) -> Path:
    manifest = mf.manifest_dict(
        "bad", "classification", "torchscript", "model.pt", ["a", "b"], [8, 8]
    )
    return mf.package(folder, module, manifest, script=script)


def test_a_raising_network_fails_with_its_reason(tmp_path: Path) -> None:
    model = load_model(ModelPackage.open(misbehaving(tmp_path, mf.RaisingNet())))
    with pytest.raises(ModelError) as caught:
        model.predict(studies()[0])
    message = str(caught.value)
    assert message.startswith("bad:1.0.0: the network raised RuntimeError:")
    assert "deliberate failure inside the test network" in message
    assert "\n" not in message


def test_nan_output_fails(tmp_path: Path) -> None:
    model = load_model(ModelPackage.open(misbehaving(tmp_path, mf.NaNNet(), script=False)))
    with pytest.raises(ModelError, match=r"bad:1\.0\.0: the network output 2 NaN"):
        model.predict(studies()[0])
    with pytest.raises(ModelError, match=r"study 1 of 2: bad:1\.0\.0: the network output 2 NaN"):
        model.predict_batch(studies()[:2])


def test_wrong_output_shape_fails(tmp_path: Path) -> None:
    manifest = mf.manifest_dict(
        "three", "classification", "torchscript", "model.pt", ["a", "b", "c"], [32, 32]
    )
    path = mf.package(tmp_path, mf.classifier_network(), manifest)
    model = load_model(ModelPackage.open(path))
    with pytest.raises(ModelError, match=r"output has shape \(1, 2\); .* must output \(1, 3\)"):
        model.predict(studies()[0])


def test_sleeping_network_sleeps(tmp_path: Path) -> None:
    model = load_model(ModelPackage.open(misbehaving(tmp_path, mf.SleepyNet(0.4))), explain=False)
    started = time.perf_counter()
    prediction = model.predict(studies()[1])
    assert time.perf_counter() - started >= 0.4
    assert len(prediction.findings) == 2


@pytest.mark.parametrize("runtime", list(WEIGHTS))
def test_unloadable_weights_fail_at_load(tmp_path: Path, runtime: str) -> None:
    folder = classifier(tmp_path, runtime)
    (folder / WEIGHTS[runtime]).write_bytes(b"these are not weights")
    with pytest.raises(ModelError, match=r"chest:1\.0\.0: "):
        load_model(ModelPackage.open(folder))


def test_bundle_weights_that_do_not_fit(tmp_path: Path) -> None:
    folder = classifier(tmp_path, "monai_bundle")
    torch.save(mf.RegionNet().state_dict(), folder / "models" / "model.pt")
    with pytest.raises(ModelError, match="the weights do not fit network_def"):
        load_model(ModelPackage.open(folder))
