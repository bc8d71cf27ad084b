"""MONAI bundles: ``configs/inference.json`` builds the network, ``models/model.pt`` holds
its state dict.

The bundle is read with :class:`monai.bundle.ConfigParser` only: nothing is downloaded,
and no other part of the bundle's inference workflow (transforms, handlers) runs; radpilot
does its own DICOM preprocessing from the manifest. ``network_def`` may name any
importable class (MONAI's networks, or a package installed alongside radpilot); MONAI
config expressions are Python, so registering a bundle is a decision to trust its code,
recorded in the audit log with the weights' hash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from radpilot.core.errors import ModelError
from radpilot.models.package import inference_config
from radpilot.models.runtimes import Network, as_array

if TYPE_CHECKING:
    from radpilot.models.package import ModelPackage

__all__ = ["MonaiBundleNetwork", "load"]


class MonaiBundleNetwork:
    """The bundle's ``network_def`` with its weights, in eval mode."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module: torch.nn.Module | None = module
        self._net = module

    def forward(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Run the network on ``batch``."""
        with torch.inference_mode():
            return as_array(self._net(torch.from_numpy(batch)))


def _state_dict(loaded: Any, label: str) -> Mapping[str, torch.Tensor]:
    """The state dict in ``loaded``: itself, or under a 'model'/'state_dict' key."""
    if isinstance(loaded, Mapping):
        if loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
            return loaded
        for key in ("model", "state_dict", "network"):
            inner = loaded.get(key)
            if isinstance(inner, Mapping):
                return _state_dict(inner, label)
    raise ModelError(
        f"{label}: the bundle's weights file holds no state dict; save "
        "network.state_dict() with torch.save"
    )


def load(package: ModelPackage, threads: int | None) -> Network:
    """Build ``network_def`` and load the weights the manifest names.

    Raises
    ------
    ModelError
        If the config is missing or does not build a ``torch.nn.Module``, or the weights
        do not fit it.
    """
    from monai.bundle.config_parser import ConfigParser

    label = package.manifest.label
    if threads:
        torch.set_num_threads(threads)
    config = inference_config(package.root)
    metadata = package.root / "configs" / "metadata.json"
    if config is None or not metadata.is_file():
        raise ModelError(
            f"{label}: a MONAI bundle needs configs/metadata.json and configs/inference.json"
        )
    parser = ConfigParser()
    try:
        parser.read_meta(str(metadata))
        parser.read_config(str(config))
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise ModelError(f"{label}: cannot read the bundle's configs ({exc})") from exc
    if "network_def" not in parser:
        raise ModelError(f"{label}: {config.name} defines no 'network_def'")
    try:
        network = parser.get_parsed_content("network_def", instantiate=True)
    except Exception as exc:  # a bundle config can raise anything while building
        raise ModelError(
            f"{label}: network_def could not be built ({type(exc).__name__}: {str(exc)[:300]})"
        ) from exc
    if not isinstance(network, torch.nn.Module):
        raise ModelError(f"{label}: network_def built a {type(network).__name__}, not a module")
    try:
        loaded = torch.load(package.weights_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the unpickler raises many types on a bad file
        raise ModelError(f"{label}: cannot read {package.manifest.weights} ({exc})") from exc
    try:
        network.load_state_dict(_state_dict(loaded, label), strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{label}: the weights do not fit network_def ({str(exc)[:300]})") from exc
    network.eval()
    return MonaiBundleNetwork(network)
