"""Runtimes: how a package's weights are executed, keyed by :class:`Runtime`.

A small registry in the manner of pynetdicom's event handlers and pydicom's decoder
plugins: each runtime is a loader, named ``"module:function"`` and imported on first use,
so that ``import radpilot.models`` does not import ONNX Runtime or MONAI. A deployment
can add its own with :func:`register_runtime`.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from radpilot.core.errors import ModelError
from radpilot.models.manifest import Runtime

if TYPE_CHECKING:
    import torch

    from radpilot.models.package import ModelPackage

__all__ = ["Loader", "Network", "as_array", "load_network", "register_runtime", "submodule"]


class Network(Protocol):
    """A loaded network: a float32 batch in, a float32 array out.

    ``module`` is a plain ``torch.nn.Module`` that forward hooks work on (Grad-CAM),
    or None where there is none (TorchScript modules refuse hooks; ONNX has no module).
    """

    module: torch.nn.Module | None

    def forward(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Run the network on ``batch`` (N, C, *spatial)."""
        ...


Loader = Callable[["ModelPackage", int | None], Network]

_LOADERS: dict[Runtime, Loader | str] = {
    Runtime.TORCHSCRIPT: "radpilot.models.runtimes.torchscript:load",
    Runtime.ONNX: "radpilot.models.runtimes.onnx:load",
    Runtime.MONAI_BUNDLE: "radpilot.models.runtimes.monai_bundle:load",
}
_lock = threading.Lock()


def register_runtime(runtime: Runtime | str, loader: Loader | str) -> None:
    """Use ``loader`` (a callable or ``"module:function"``) for ``runtime``."""
    with _lock:
        _LOADERS[Runtime(runtime)] = loader


def _resolve(runtime: Runtime) -> Loader:
    with _lock:
        entry = _LOADERS[runtime]
        if isinstance(entry, str):
            module, _, name = entry.partition(":")
            resolved: Loader = getattr(importlib.import_module(module), name)
            _LOADERS[runtime] = resolved
            return resolved
        return entry


def load_network(package: ModelPackage, threads: int | None = None) -> Network:
    """Load ``package``'s weights with the runtime its manifest names.

    Raises
    ------
    ModelError
        If the runtime cannot load the weights; the message says why.
    """
    return _resolve(package.manifest.runtime)(package, threads)


def as_array(output: Any) -> npt.NDArray[np.float32]:
    """A network's output as float32 numpy: the tensor itself, or the first of a tuple.

    Raises
    ------
    ModelError
        If the output holds no tensor.
    """
    import torch

    if isinstance(output, list | tuple) and output:
        output = output[0]
    if isinstance(output, dict) and len(output) == 1:
        output = next(iter(output.values()))
    if isinstance(output, torch.Tensor):
        return output.detach().to(torch.float32).cpu().numpy()
    if isinstance(output, np.ndarray):
        return output.astype(np.float32, copy=False)
    raise ModelError(
        f"the network returned {type(output).__name__}; it must return one tensor "
        "(or a tuple whose first item is the tensor radpilot reads)"
    )


def submodule(module: Any, dotted: str, section: str) -> Any:
    """The callable submodule ``dotted`` ("features", "class_layers.out") of a torch or
    scripted module; scripted submodules are reachable even where hooks are refused.

    Raises
    ------
    ModelError
        If there is no such submodule (the message names the manifest ``section``).
    """
    found = module
    for part in dotted.split("."):
        found = getattr(found, part, None)
        if found is None or not callable(found):
            raise ModelError(f"the network has no submodule {dotted!r} ({section} section)")
    return found
