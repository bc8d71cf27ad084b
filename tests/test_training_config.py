"""Training configs: every problem is refused before training, naming file, line and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from radpilot.core.errors import ConfigurationError
from radpilot.training.config import load_config
from tests.training_helpers import classification_config, write_config

DOC = Path(__file__).resolve().parents[1] / "docs" / "training.md"


def refused(tmp_path: Path, config: dict[str, object]) -> str:
    path = write_config(tmp_path, config)
    with pytest.raises(ConfigurationError) as caught:
        load_config(path)
    return str(caught.value)


def line_of(path: Path, key: str) -> int:
    lines = path.read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if re.match(rf"\s*{key}:", text))


def test_a_valid_config_loads_with_paths_from_its_folder(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, classification_config()))
    assert config.data.npz is not None and config.data.npz.path.is_file()
    assert config.stop_metric == "auc"
    (tmp_path / "data.npz").touch()
    relative = load_config(
        write_config(tmp_path, classification_config(data={"npz": {"path": "data.npz"}}))
    )
    assert relative.data.npz is not None and relative.data.npz.path == tmp_path / "data.npz"


def test_unknown_key_wrong_type_and_missing_file_name_line_and_key(tmp_path: Path) -> None:
    config = classification_config(
        training={"epochs": "many", "batch_sizee": 8},
        data={"npz": {"path": "nowhere.npz"}},
    )
    path = write_config(tmp_path, config)
    with pytest.raises(ConfigurationError) as caught:
        load_config(path)
    message = str(caught.value)
    assert (
        f"{path}:{line_of(path, 'epochs')}: training.epochs: Input should be a valid integer"
        in message
    )
    assert f"{path}:{line_of(path, 'batch_sizee')}: training.batch_sizee: Extra inputs" in message
    assert f"{path}:{line_of(path, 'path')}: data.npz.path: Value error, no such file" in message
    assert str(tmp_path / "nowhere.npz") in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"network": {"name": "NoSuchNet"}}, "network: Value error, name: 'NoSuchNet' is not"),
        (
            {"network": {"name": "SmallCNN", "kwargs": {"width": [8]}}},
            "network: Value error, kwargs.width: not a parameter of SmallCNN",
        ),
        (
            {"network": {"name": "DenseNet121", "kwargs": {"pretrained": True}}},
            "kwargs.pretrained: radpilot never downloads weights",
        ),
        (
            {"network": {"name": "EfficientNetBN", "kwargs": {}}},
            "kwargs.model_name: required by EfficientNetBN",
        ),
        (
            {"network": {"name": "SmallCNN", "checkpoint": "missing.pt"}},
            "network.checkpoint: Value error, no such file",
        ),
        ({"task": "detection", "augment": {"rotate_degrees": 10}}, "augment: Value error"),
        ({"training": {"epochs": 1, "early_stopping": {"metric": "dice"}}}, "'dice' is not one of"),
        ({"data": {"labels": ["only"]}}, "a classifier needs at least two classes"),
        ({"input": {"size": [28, 28], "normalize": "fixed"}}, "give mean and std"),
        ({"schema": "radpilot.train/9"}, "schema: Input should be 'radpilot.train/1'"),
        ({"name": "Has Spaces"}, "name: Value error, a model name is lower case"),
    ],
)
def test_refusals_name_the_key(tmp_path: Path, changes: dict[str, object], expected: str) -> None:
    assert expected in refused(tmp_path, classification_config(**changes))


def test_one_source_exactly_and_cohorts_classify_only(tmp_path: Path) -> None:
    base = classification_config()
    both = classification_config(data={**base["data"], "cohort": {"finding": "pneumonia"}})
    assert "name exactly one source" in refused(tmp_path, both)
    cohort = classification_config(
        task="segmentation",
        network={"name": "UNet", "kwargs": {"channels": [4, 8], "strides": [2]}},
        data={"npz": None, "cohort": {"finding": "x"}, "labels": ["lesion"]},
    )
    assert "usable for classification only" in refused(tmp_path, cohort)


def test_the_documented_example_is_a_valid_config(tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(# radpilot train.*?)```", text, re.S)
    assert block is not None, "docs/training.md lost its example config"
    example = block.group(1)
    data = classification_config()["data"]["npz"]["path"]
    example = re.sub(r"path: \S*pneumoniamnist.npz", f"path: {data}", example)
    path = tmp_path / "example.yaml"
    path.write_text(example, encoding="utf-8")
    config = load_config(path)
    assert config.task == "classification" and config.data.labels == ["normal", "pneumonia"]
