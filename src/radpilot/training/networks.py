"""Networks by name: any class or factory of ``monai.networks.nets``, ``SmallCNN``, ``RetinaNet``.

The config names a network and its keyword arguments; radpilot fills in what it knows
(``spatial_dims=2``, the input channels, the number of outputs) where the network takes
them and the config does not say, and refuses ``pretrained: true``: training never
downloads weights. Transfer learning starts from a local file instead
(:func:`load_checkpoint`).
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from radpilot.core.errors import ConfigurationError
from radpilot.models.manifest import EmbeddingSpec

__all__ = [
    "CheckpointReport",
    "SmallCNN",
    "build_network",
    "check_network",
    "embedding_spec",
    "explain_split",
    "load_checkpoint",
]

#: Keyword arguments of radpilot's RetinaNet builder (``radpilot.training.detection``).
RETINANET_KWARGS = {"backbone", "returned_layers", "fpn_channels", "anchor_shapes"}
_FILLED = {
    "spatial_dims",
    "in_channels",
    "n_input_channels",
    "out_channels",
    "num_classes",
    "pretrained",
}


class SmallCNN(nn.Module):
    """A small classifier: ``features`` (conv-BN-ReLU blocks, each halving the size) and
    ``head`` (global average pool, linear). The split lets Grad-CAM reach the features of
    the exported TorchScript model (``explain`` in the manifest).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        widths: tuple[int, ...] | list[int] = (16, 32, 64),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for width in widths:
            layers += [
                nn.Conv2d(previous, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.Conv2d(width, width, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
            previous = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(previous, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``."""
        out: torch.Tensor = self.head(self.features(x))
        return out


def _target(name: str) -> Callable[..., Any]:
    if name == "SmallCNN":
        return SmallCNN
    import monai.networks.nets as nets

    target = getattr(nets, name, None)
    if name.startswith("_") or not callable(target):
        raise ValueError(
            f"name: {name!r} is not a network of monai.networks.nets (e.g. DenseNet121, "
            "ResNet, resnet18, EfficientNetBN, UNet), nor SmallCNN or RetinaNet"
        )
    return target  # type: ignore[no-any-return]


def _parameters(target: Callable[..., Any]) -> tuple[dict[str, inspect.Parameter], bool]:
    """The keyword parameters ``target`` accepts, and whether it accepts any others."""
    signature = inspect.signature(target)
    params = {
        n: p
        for n, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return params, False
    # **kwargs handed on: to a base class (DenseNet121 -> DenseNet), or resnetNN -> ResNet
    bases: list[Any] = list(inspect.getmro(target)[1:]) if inspect.isclass(target) else []
    if not inspect.isclass(target) and getattr(target, "__name__", "").startswith("resnet"):
        from monai.networks.nets.resnet import ResNet

        bases = [ResNet]
    for base in bases:
        if base in (nn.Module, object):
            break
        inner, open_ended = _parameters(base)
        return {**inner, **params}, open_ended
    return params, True


def check_network(name: str, kwargs: Mapping[str, Any], task: str) -> None:
    """Check a network's name and keyword arguments without building it.

    Raises
    ------
    ValueError
        If the name is unknown, a keyword is not accepted, a required one is missing, or
        ``pretrained`` is true; the message names the key.
    """
    if task == "detection" or name == "RetinaNet":
        if not (task == "detection" and name == "RetinaNet"):
            raise ValueError("name: detection trains RetinaNet, and RetinaNet is for detection")
        unknown = sorted(set(kwargs) - RETINANET_KWARGS)
        if unknown:
            raise ValueError(
                f"kwargs: {unknown} not accepted; RetinaNet takes {sorted(RETINANET_KWARGS)}"
            )
        return
    target = _target(name)
    params, open_ended = _parameters(target)
    if not open_ended:
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise ValueError(f"kwargs.{unknown[0]}: not a parameter of {name} ({sorted(params)})")
    if kwargs.get("pretrained") or kwargs.get("pretrained_backbone"):
        raise ValueError(
            "kwargs.pretrained: radpilot never downloads weights; start from a local file "
            "with network.checkpoint"
        )
    own = inspect.signature(target).parameters  # a factory supplies its base's arguments
    missing = [
        n
        for n, p in own.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.default is inspect.Parameter.empty
        and n not in kwargs
        and n not in _FILLED
    ]
    if missing:
        raise ValueError(f"kwargs.{missing[0]}: required by {name}")


def build_network(
    name: str, kwargs: Mapping[str, Any], in_channels: int, outputs: int
) -> nn.Module:
    """Build a (non-detection) network with radpilot's fill-ins.

    Raises
    ------
    ConfigurationError
        If the network's constructor refuses the arguments.
    """
    target = _target(name)
    params, _ = _parameters(target)
    filled: dict[str, Any] = {
        "spatial_dims": 2,
        "in_channels": in_channels,
        "n_input_channels": in_channels,
        "out_channels": outputs,
        "num_classes": outputs,
        "pretrained": False,
    }
    arguments = {k: v for k, v in filled.items() if k in params and k not in kwargs}
    arguments.update(kwargs)
    try:
        network = target(**arguments)
    except (TypeError, ValueError, AssertionError, KeyError) as exc:
        raise ConfigurationError(
            f"network: {name}({', '.join(sorted(arguments))}) raised "
            f"{type(exc).__name__}: {exc}; check network.kwargs"
        ) from exc
    if not isinstance(network, nn.Module):
        raise ConfigurationError(f"network: {name} did not return a torch module")
    return network


def embedding_spec(network: nn.Module, features: str, head: str) -> EmbeddingSpec | None:
    """The penultimate layer of ``features`` then ``head``, where ``head`` is a
    ``Sequential`` ending in a ``Linear``: every child before that ``Linear`` joins the
    chain (MONAI DenseNet: ReLU, pooling, flatten) and the ``Linear`` is the head."""
    block = getattr(network, head, None)
    if not isinstance(block, nn.Sequential) or not len(block):
        return None
    names = [name for name, _ in block.named_children()]
    if not isinstance(block[-1], nn.Linear):
        return None
    chain = [features, *(f"{head}.{name}" for name in names[:-1])]
    return EmbeddingSpec(modules=chain, head=f"{head}.{names[-1]}")


def explain_split(network: nn.Module) -> tuple[str, str] | None:
    """The ``(feature_module, head_module)`` pair Grad-CAM can use, where the network has one."""
    for features, head in (("features", "class_layers"), ("features", "head")):
        if isinstance(getattr(network, features, None), nn.Module) and isinstance(
            getattr(network, head, None), nn.Module
        ):
            return features, head
    return None


@dataclass
class CheckpointReport:
    """What transfer learning took from a checkpoint (recorded in the model card)."""

    path: str
    loaded: int = 0
    skipped: list[str] = field(default_factory=list)  # in the file, name or shape differs
    missing: list[str] = field(default_factory=list)  # in the network, not in the file


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, ValueError, OSError, pickle.UnpicklingError) as exc:
        raise ConfigurationError(
            f"network.checkpoint: {path} is not a torch state dict ({exc}); save one with "
            "torch.save(model.state_dict(), path)"
        ) from exc
    for key in ("model", "state_dict"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ConfigurationError(f"network.checkpoint: {path} holds no state dict of tensors")
    return data


def load_checkpoint(network: nn.Module, path: Path, *, strict: bool) -> CheckpointReport:
    """Copy the tensors of ``path`` whose name and shape match into ``network``.

    Raises
    ------
    ConfigurationError
        If the file is not a state dict, or ``strict`` and anything differs.
    """
    source = _state_dict(path)
    target = network.state_dict()
    report = CheckpointReport(str(path))
    usable = {}
    for key, tensor in source.items():
        if key in target and target[key].shape == tensor.shape:
            usable[key] = tensor
        else:
            report.skipped.append(key)
    report.missing = sorted(set(target) - set(usable))
    report.loaded = len(usable)
    if strict and (report.skipped or report.missing):
        raise ConfigurationError(
            f"network.checkpoint: {path} does not fit the network ({len(report.skipped)} "
            f"tensor(s) unused, {len(report.missing)} missing, e.g. "
            f"{(report.skipped + report.missing)[:3]}); set checkpoint_strict: false to "
            "load what fits"
        )
    if not usable:
        raise ConfigurationError(f"network.checkpoint: no tensor of {path} fits the network")
    network.load_state_dict(usable, strict=False)
    return report


def freeze(network: nn.Module, prefixes: list[str]) -> int:
    """Stop training the parameters under ``prefixes``; the number frozen.

    Raises
    ------
    ConfigurationError
        If a prefix matches no parameter.
    """
    frozen = 0
    for prefix in prefixes:
        matched = [p for n, p in network.named_parameters() if n.startswith(prefix)]
        if not matched:
            raise ConfigurationError(f"network.freeze: {prefix!r} matches no parameter")
        for parameter in matched:
            parameter.requires_grad_(False)
        frozen += len(matched)
    return frozen
