"""TorchScript weights, run with ``torch.jit.load`` on the CPU.

PyTorch deprecates TorchScript in favour of ``torch.export``, and ``torch.jit.load`` warns
so; the format still loads and runs and is what most vendors ship today, so radpilot
silences exactly that one deprecation message when loading.

A loaded TorchScript module refuses Python forward hooks, so Grad-CAM cannot reach its
layers: :attr:`module` is None and explanations use occlusion.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch

from radpilot.core.errors import ModelError
from radpilot.models.runtimes import Network, as_array

if TYPE_CHECKING:
    from radpilot.models.package import ModelPackage

__all__ = ["TorchScriptNetwork", "load"]


class TorchScriptNetwork:
    """A TorchScript module in eval mode, called under ``torch.inference_mode``."""

    module: torch.nn.Module | None = None

    def __init__(self, script: torch.jit.ScriptModule) -> None:
        self.script = script

    def forward(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Run the module on ``batch``."""
        with torch.inference_mode():
            return as_array(self.script(torch.from_numpy(batch)))


def load(package: ModelPackage, threads: int | None) -> Network:
    """Load the package's TorchScript file on the CPU.

    ``threads`` sets torch's intra-op thread count, which is process-wide.

    Raises
    ------
    ModelError
        If the file is not a TorchScript archive.
    """
    if threads:
        torch.set_num_threads(threads)
    warnings.filterwarnings(
        "ignore", message=r"`torch\.jit\.load` is deprecated", category=DeprecationWarning
    )
    try:
        script = torch.jit.load(  # type: ignore[no-untyped-call]  # untyped upstream
            str(package.weights_path), map_location="cpu"
        )
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{package.manifest.label}: {package.manifest.weights} is not a loadable "
            f"TorchScript file ({first[:200]}); save it with torch.jit.trace/script and "
            "ScriptModule.save, or declare the right runtime"
        ) from exc
    script.eval()
    return TorchScriptNetwork(script)
