"""Networks by name, transfer learning, batch augmentation, deterministic TorchScript export."""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from radpilot.core.errors import ConfigurationError
from radpilot.training.augment import BatchAugment
from radpilot.training.config import AugmentConfig
from radpilot.training.data_npz import boxes_from_masks
from radpilot.training.export import export_torchscript
from radpilot.training.networks import (
    SmallCNN,
    build_network,
    check_network,
    explain_split,
    load_checkpoint,
)
from tests.training_helpers import phantoms

NETWORKS = [
    ("DenseNet121", {"init_features": 8, "growth_rate": 8, "block_config": [2, 2]}),
    ("ResNet", {"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [8, 8, 16, 16]}),
    ("resnet18", {"conv1_t_size": 3, "widen_factor": 0.25}),
    ("EfficientNetBN", {"model_name": "efficientnet-b0"}),
    ("SmallCNN", {"widths": [8]}),
]


@pytest.mark.parametrize(("name", "kwargs"), NETWORKS)
def test_networks_by_name_get_2d_inputs_and_outputs_filled_in(
    name: str, kwargs: dict[str, object]
) -> None:
    check_network(name, kwargs, "classification")
    torch.manual_seed(0)
    network = build_network(name, kwargs, in_channels=1, outputs=3).eval()
    with torch.no_grad():
        assert network(torch.rand(2, 1, 32, 32)).shape == (2, 3)


def test_pretrained_and_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match=r"kwargs\.pretrained: radpilot never downloads"):
        check_network("DenseNet121", {"pretrained": True}, "classification")
    with pytest.raises(ConfigurationError, match=r"network: ResNet\(.*\) raised"):
        build_network("ResNet", {"block": "nonsense", "layers": [1], "block_inplanes": [8]}, 1, 2)
    with pytest.raises(ValueError, match="detection trains RetinaNet"):
        check_network("UNet", {}, "detection")


def test_explain_split_of_densenet_and_smallcnn() -> None:
    dense = build_network("DenseNet121", dict(NETWORKS[0][1]), 1, 2)  # type: ignore[arg-type]
    assert explain_split(dense) == ("features", "class_layers")
    assert explain_split(SmallCNN()) == ("features", "head")
    assert explain_split(build_network("ResNet", dict(NETWORKS[1][1]), 1, 2)) is None  # type: ignore[arg-type]


def test_checkpoint_loads_what_fits(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = SmallCNN(num_classes=3, widths=[8, 16])
    path = tmp_path / "source.pt"
    torch.save({"model": source.state_dict()}, path)
    target = SmallCNN(num_classes=2, widths=[8, 16])
    report = load_checkpoint(target, path, strict=False)
    assert report.skipped == ["head.3.weight", "head.3.bias"]  # 3 classes there, 2 here
    assert report.missing == ["head.3.bias", "head.3.weight"]
    assert torch.equal(target.features[0].weight, source.features[0].weight)
    with pytest.raises(ConfigurationError, match="checkpoint_strict: false"):
        load_checkpoint(SmallCNN(num_classes=2, widths=[8, 16]), path, strict=True)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigurationError, match="is not a torch state dict"):
        load_checkpoint(target, tmp_path / "junk.pt", strict=False)


def test_export_is_byte_identical_and_faithful(tmp_path: Path) -> None:
    example = torch.rand(2, 1, 32, 32)
    hashes = []
    for attempt in range(2):
        torch.manual_seed(5)
        network = build_network("DenseNet121", dict(NETWORKS[0][1]), 1, 2)  # type: ignore[arg-type]
        export_torchscript(network, example, tmp_path / f"{attempt}.pt")
        hashes.append((tmp_path / f"{attempt}.pt").read_bytes())
    assert hashes[0] == hashes[1]
    torch.manual_seed(6)
    other = build_network("DenseNet121", dict(NETWORKS[0][1]), 1, 2)  # type: ignore[arg-type]
    export_torchscript(other, example, tmp_path / "other.pt")
    assert (tmp_path / "other.pt").read_bytes() != hashes[0]
    data = hashes[0]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        assert not [i for i in infos if i.filename.endswith(".debug_pkl")]
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        for info in infos:  # records start on 64-byte boundaries, as PyTorch writes them
            start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
            assert start % 64 == 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated")
        loaded = torch.jit.load(io.BytesIO(data))  # type: ignore[no-untyped-call]
    torch.manual_seed(5)
    network = build_network("DenseNet121", dict(NETWORKS[0][1]), 1, 2).eval()  # type: ignore[arg-type]
    with torch.no_grad():
        assert torch.allclose(loaded(example), network(example), atol=1e-5)


def test_batch_augment_moves_masks_and_boxes_with_the_images() -> None:
    images, masks = phantoms(16, 48, seed=3)
    unit = torch.from_numpy((images - images.min()) / (images.max() - images.min()))[:, None]
    target = torch.from_numpy(masks)
    config = AugmentConfig(
        rotate_degrees=30, scale=0.2, translate=0.1, flip_lr=1.0, padding="zeros"
    )
    generator = torch.Generator().manual_seed(0)
    moved, moved_masks, _ = BatchAugment(config, generator)(unit.float(), target)
    assert moved_masks is not None and not torch.equal(moved_masks, target)
    inside = moved[:, 0][moved_masks > 0].mean()
    outside = moved[:, 0][(moved_masks == 0) & (moved[:, 0] > 0)].mean()
    assert float(inside - outside) > 0.3  # the lesions moved with their masks
    boxes = boxes_from_masks(target)
    flip_only = AugmentConfig(flip_lr=1.0, flip_ud=1.0)
    flipped, _, moved_boxes = BatchAugment(flip_only, torch.Generator())(unit.float(), None, boxes)
    assert torch.equal(flipped, unit.float().flip(-1).flip(-2))
    assert moved_boxes is not None
    for image, found in zip(flipped, moved_boxes, strict=True):
        for x0, y0, x1, y1, _ in found.int().tolist():
            assert float(image[0, y0:y1, x0:x1].mean()) > float(image.mean())
