"""The network's penultimate-layer features, taken in the same forward pass as its output.

Embedding drift (``radpilot.monitoring.drift.embedding_drift``) compares what the network
"sees" in live traffic with what it saw in its reference window; a change of contrast,
resolution or anatomy that every header hides still moves the embedding. Where the
embedding comes from is declared in the manifest's ``embedding`` section
(:class:`radpilot.models.manifest.EmbeddingSpec`), because neither runtime can find it
alone: a loaded TorchScript module refuses forward hooks, and an ONNX graph has only the
outputs it was exported with.

- **Torch runtimes** (TorchScript, MONAI bundle): the network runs as
  ``head(modules[-1](...modules[0](x)))`` — scripted submodules are callable even where
  hooks are refused. The first batch is also run through the whole network, and a split
  that does not reproduce its output is refused, so the declared layer is provably the
  one that feeds the head. After that one check the split *is* the forward pass: no
  second pass, no extra cost.
- **ONNX**: the graph output the manifest names, fetched in the same ``session.run``.

Embeddings with spatial axes (a feature map) are averaged over them.
"""

from __future__ import annotations

import abc
import threading
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from radpilot.core.errors import ModelError
from radpilot.models.manifest import EmbeddingSpec
from radpilot.models.runtimes import Network, as_array, submodule

__all__ = ["Embedder", "flat", "make_embedder"]


def flat(embedding: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``(N, D, *spatial)`` averaged over the spatial axes: ``(N, D)`` float32."""
    if embedding.ndim < 2:
        raise ModelError(f"the embedding has shape {embedding.shape}; it needs a batch axis")
    if embedding.ndim > 2:
        embedding = embedding.mean(axis=tuple(range(2, embedding.ndim)))
    return np.ascontiguousarray(embedding, dtype=np.float32)


class Embedder(abc.ABC):
    """Runs a network and returns its output with its embedding (thread-safe)."""

    @abc.abstractmethod
    def run(
        self, batch: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """The network's output for ``batch`` and the ``(N, D)`` embedding."""

    def check_next(self) -> None:  # noqa: B027 - only a split has something to check
        """Check the next batch again (after the blank input of :func:`load_model`)."""


class SplitEmbedder(Embedder):
    """``head(modules(x))`` on a torch module, checked once against ``module(x)``."""

    def __init__(self, module: Any, spec: EmbeddingSpec) -> None:
        self.module = module
        self.chain = [submodule(module, name, "embedding") for name in spec.modules]
        self.head = submodule(module, spec.head or "", "embedding")
        self._checked = False
        self._lock = threading.Lock()

    def check_next(self) -> None:
        """See :meth:`Embedder.check_next`."""
        with self._lock:
            self._checked = False

    def run(
        self, batch: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """See :meth:`Embedder.run`."""
        x = torch.from_numpy(batch)
        with torch.inference_mode():
            whole = None if self._checked else as_array(self.module(x.clone())).copy()
            features = x
            for step in self.chain:
                features = step(features)
            embedding = flat(as_array(features)).copy()  # before an in-place head runs
            out = as_array(self.head(features))
        if whole is not None:
            with self._lock:
                if whole.shape != out.shape or not np.allclose(whole, out, atol=1e-4, rtol=1e-3):
                    raise ModelError(
                        "the embedding section's modules and head do not reproduce the "
                        f"network's output (shape {out.shape} against {whole.shape}); "
                        "name the submodules that feed the head, in order"
                    )
                self._checked = True
        return out, embedding


class OutputEmbedder(Embedder):
    """A second output of an ONNX graph, fetched in the same run."""

    def __init__(self, network: Any, output: str | int) -> None:
        names = [o.name for o in network.session.get_outputs()]
        if isinstance(output, int):
            if not 0 <= output < len(names):
                raise ModelError(
                    f"embedding output {output}: the ONNX graph has {len(names)} output(s)"
                )
            output = names[output]
        if output not in names:
            raise ModelError(
                f"embedding output {output!r}: the ONNX graph's outputs are {', '.join(names)}"
            )
        self.network = network
        self.names = [names[0], output]

    def run(
        self, batch: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """See :meth:`Embedder.run`."""
        out, embedding = self.network.forward_outputs(batch, self.names)
        return out, flat(embedding)


def make_embedder(network: Network, spec: EmbeddingSpec | None) -> Embedder | None:
    """The embedder ``spec`` declares for ``network``; None without a spec.

    Raises
    ------
    ModelError
        If a named submodule or output does not exist, or the runtime cannot give it.
    """
    if spec is None:
        return None
    if spec.output is not None:
        if not hasattr(network, "forward_outputs"):
            raise ModelError("embedding output: this runtime returns one output only")
        return OutputEmbedder(network, spec.output)
    module = network.module if network.module is not None else getattr(network, "script", None)
    if module is None:
        raise ModelError("embedding modules: this runtime holds no torch module")
    return SplitEmbedder(module, spec)
