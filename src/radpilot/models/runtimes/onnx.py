"""ONNX weights, run with ONNX Runtime's CPU execution provider."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped]  # ships no type hints

from radpilot.core.errors import ModelError
from radpilot.models.runtimes import Network

if TYPE_CHECKING:
    import torch

    from radpilot.models.package import ModelPackage

__all__ = ["OnnxNetwork", "load"]

_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}


class OnnxNetwork:
    """An ONNX Runtime session with one image input.

    A model exported with a fixed batch size is called in chunks of that size.
    """

    module: torch.nn.Module | None = None

    def __init__(self, session: ort.InferenceSession, label: str) -> None:
        self.session = session
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(
                f"{label}: the ONNX graph has {len(inputs)} inputs; radpilot feeds one image "
                "tensor (N, C, *spatial)"
            )
        self.input_name = inputs[0].name
        if inputs[0].type not in _TYPES:
            raise ModelError(f"{label}: the ONNX input is {inputs[0].type}; use float32")
        self.dtype = _TYPES[inputs[0].type]
        first = inputs[0].shape[0] if inputs[0].shape else None
        self.fixed_batch = first if isinstance(first, int) and first > 0 else None
        self.output_name = session.get_outputs()[0].name

    def forward(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Run the session on ``batch``; the graph's first output."""
        return self.forward_outputs(batch, [self.output_name])[0]

    def forward_outputs(
        self, batch: npt.NDArray[np.float32], names: list[str]
    ) -> list[npt.NDArray[np.float32]]:
        """Run the session on ``batch`` once; the named outputs, in order."""
        step = self.fixed_batch or len(batch)
        parts: list[list[npt.NDArray[Any]]] = [[] for _ in names]
        for start in range(0, len(batch), step):
            chunk = batch[start : start + step].astype(self.dtype, copy=False)
            count = len(chunk)
            if count < step:  # a fixed batch size: pad with zeros, keep the real rows
                pad = np.zeros((step - count, *chunk.shape[1:]), dtype=self.dtype)
                chunk = np.concatenate([chunk, pad])
            outputs = self.session.run(names, {self.input_name: chunk})
            for found, output in zip(parts, outputs, strict=True):
                found.append(np.asarray(output)[:count])
        return [np.concatenate(p).astype(np.float32, copy=False) for p in parts]


def load(package: ModelPackage, threads: int | None) -> Network:
    """Open an ONNX Runtime session on the CPU with ``threads`` intra-op threads.

    Raises
    ------
    ModelError
        If ONNX Runtime cannot load the graph.
    """
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings are not radpilot's log
    try:
        session = ort.InferenceSession(
            str(package.weights_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own pybind11 error types
        raise ModelError(
            f"{package.manifest.label}: ONNX Runtime cannot load {package.manifest.weights} "
            f"({type(exc).__name__}: {str(exc)[:200]}); check the file and the opset"
        ) from exc
    return OnnxNetwork(session, package.manifest.label)
