"""Heatmaps that show where a 2D classifier looked, over the key image.

Two methods, chosen by the manifest's ``explain`` section and what the runtime gives
(``docs/models.md`` explains why):

- **Grad-CAM on a declared split** for TorchScript models whose manifest names
  ``explain.feature_module`` and ``explain.head_module`` (submodules with
  ``forward(x) == head(features(x))``, checked once): the feature map's gradient is taken
  through the two scripted submodules directly, since scripted modules refuse hooks. Two
  passes instead of occlusion's 65.

- **Grad-CAM** (MONAI's :class:`monai.visualize.GradCAM`) where the runtime holds a plain
  ``torch.nn.Module`` (MONAI bundles), on the last convolution the network executes. MONAI
  attaches its hooks to the module for good, so it works on a private copy of the
  network, one explanation at a time, and never disturbs the copy that predicts.
- **Occlusion** everywhere else (TorchScript modules refuse hooks; ONNX has no module):
  the image is cut into a coarse grid of cells, each cell is replaced by the image mean,
  and all occluded copies go through the runtime's own forward in a few batched calls.
  The drop of the label's score per cell, smoothed to the image size, is the heatmap.

Either way the map is brought back to the key image's own pixel grid (undoing resize and
letterbox) and scaled to [0, 1].
"""

from __future__ import annotations

import copy
import logging
import threading
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 - the name every torch user knows

from radpilot.core.errors import ModelError
from radpilot.models.geometry import to_source
from radpilot.models.manifest import Activation, ExplainSpec
from radpilot.models.postprocess import activate
from radpilot.models.preprocess import Sample
from radpilot.models.runtimes import Network, submodule

__all__ = ["Explainer", "SplitGradCAM", "occlusion_map"]

log = logging.getLogger(__name__)

GRID = 8  # occlusion cells per axis: 64 occluded copies + 1
CHUNK = GRID * GRID + 1  # the whole occlusion batch goes through in one forward call


def _unit(heat: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    heat = np.nan_to_num(np.clip(heat, 0.0, None), nan=0.0, posinf=0.0)
    top = float(heat.max()) if heat.size else 0.0
    return (heat / top if top > 0 else np.zeros_like(heat)).astype(np.float32)


def occlusion_map(
    network: Network,
    array: npt.NDArray[np.float32],
    label_index: int,
    activation: Activation,
    grid: int = GRID,
) -> npt.NDArray[np.float32]:
    """Occlusion sensitivity of one 2D input ``(C, H, W)`` for one label.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float32 in [0, 1]: how much hiding each region lowers the score.
    """
    _, height, width = array.shape
    cells_y, cells_x = min(grid, height), min(grid, width)
    ys = np.linspace(0, height, cells_y + 1).round().astype(int)
    xs = np.linspace(0, width, cells_x + 1).round().astype(int)
    fill = array.mean(axis=(1, 2), keepdims=True)
    copies = [array]
    for i in range(cells_y):
        for j in range(cells_x):
            occluded = array.copy()
            occluded[:, ys[i] : ys[i + 1], xs[j] : xs[j + 1]] = fill
            copies.append(occluded)
    batch = np.stack(copies).astype(np.float32)
    outputs = [network.forward(batch[s : s + CHUNK]) for s in range(0, len(batch), CHUNK)]
    scores = activate(np.concatenate(outputs), activation)[:, label_index]
    drop = (scores[0] - scores[1:]).reshape(1, 1, cells_y, cells_x).astype(np.float32)
    smooth = F.interpolate(
        torch.from_numpy(drop), size=(height, width), mode="bilinear", align_corners=False
    )
    return _unit(smooth[0, 0].numpy())


def _last_conv(module: torch.nn.Module, array: npt.NDArray[np.float32]) -> str | None:
    """The name of the last 2D convolution the network executes on ``array``."""
    order: list[str] = []
    handles = [
        layer.register_forward_hook(lambda *_, name=name: order.append(name))
        for name, layer in module.named_modules()
        if isinstance(layer, torch.nn.Conv2d)
    ]
    try:
        with torch.inference_mode():
            module(torch.from_numpy(array[None]))
    finally:
        for handle in handles:
            handle.remove()
    return order[-1] if order else None


def _as_is(x: Any) -> Any:
    return x


class SplitGradCAM:
    """Grad-CAM through two scripted submodules, ``head(features(x))``.

    Raises
    ------
    ModelError
        If a submodule is missing, or the split does not reproduce the network's output.
    """

    def __init__(self, module: torch.nn.Module, features: str, head: str) -> None:
        self.module = module
        self.features = submodule(module, features, "explain")
        self.head = submodule(module, head, "explain")
        self._checked = False

    def _check(self, x: torch.Tensor) -> None:
        with torch.inference_mode():
            whole = self.module(x)
            split = self.head(self.features(x))
        if whole.shape != split.shape or not torch.allclose(whole, split, atol=1e-4, rtol=1e-3):
            raise ModelError("head(features(x)) differs from the network's output")
        self._checked = True

    def heatmap(self, array: npt.NDArray[np.float32], label_index: int) -> npt.NDArray[np.float32]:
        """Grad-CAM of ``label_index`` over one input ``(C, H, W)``, at ``(H, W)``."""
        x = torch.from_numpy(array[None].copy())
        if not self._checked:
            self._check(x)
        with torch.enable_grad():
            maps = self.features(x).detach().requires_grad_(True)
            # A clone, not the leaf: heads often start with an in-place ReLU.
            score = self.head(maps.clone())[0, label_index]
            (grad,) = torch.autograd.grad(score, maps)
        weights = grad.mean(dim=tuple(range(2, grad.ndim)), keepdim=True)
        cam = torch.relu((weights * maps).sum(dim=1, keepdim=True)).detach()
        size = tuple(array.shape[1:])
        cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
        return _unit(cam[0, 0].numpy().astype(np.float32))


class Explainer:
    """Heatmaps for one loaded 2D classifier (thread-safe; one map at a time)."""

    def __init__(
        self, network: Network, activation: Activation, spec: ExplainSpec | None = None
    ) -> None:
        self.network = network
        self.activation = activation
        self.spec = spec or ExplainSpec()
        module = network.module
        use_cam = self.spec.method in ("auto", "gradcam")
        self._module = module if use_cam and module is not None else None
        # TorchScript runtimes keep their scripted module as ``script`` (module is None).
        script = getattr(network, "script", None)
        self._split: SplitGradCAM | None = None
        if use_cam and isinstance(script, torch.jit.ScriptModule) and self.spec.feature_module:
            self._split = SplitGradCAM(
                script, self.spec.feature_module, self.spec.head_module or ""
            )
        self._cam: Any = None
        self._lock = threading.Lock()

    @property
    def method(self) -> str:
        """``gradcam`` or ``occlusion``: what the last (or next) heatmap uses."""
        return "gradcam" if self._module is not None or self._split is not None else "occlusion"

    def _gradcam(
        self, module: torch.nn.Module, array: npt.NDArray[np.float32], label_index: int
    ) -> npt.NDArray[np.float32] | None:
        from monai.visualize.class_activation_maps import GradCAM

        if self._cam is None:
            private = copy.deepcopy(module)
            layer = _last_conv(private, array)
            if layer is None:
                self._module = None  # no convolution to look at: occlusion from now on
                return None
            self._cam = GradCAM(private, target_layers=layer, postprocessing=_as_is)
        # The input requires grad so that a hooked first layer has an input with a gradient
        # (else torch warns that its full backward hook sees only the outputs).
        image = torch.from_numpy(array[None].copy()).requires_grad_(True)
        with torch.enable_grad():
            cam = self._cam(image, class_idx=label_index)
        return _unit(cam[0, 0].detach().numpy().astype(np.float32))

    def heatmap(self, sample: Sample, label_index: int) -> npt.NDArray[np.float32]:
        """The heatmap of ``label_index`` over ``sample``'s source image.

        Returns
        -------
        numpy.ndarray
            ``(rows, cols)`` of the source image, float32 in [0, 1].

        Raises
        ------
        ModelError
            If the network fails on the occluded copies (Grad-CAM failures fall back to
            occlusion, with a warning in the log).
        """
        with self._lock:
            heat = None
            module = self._module
            if self._split is not None:
                try:
                    heat = self._split.heatmap(sample.array, label_index)
                except Exception as exc:  # noqa: BLE001 - occlusion explains instead
                    log.warning("Grad-CAM on the declared split failed (%s); occlusion", exc)
                    self._split = None
            if heat is None and module is not None:
                try:
                    heat = self._gradcam(module, sample.array, label_index)
                # e.g. in-place operations that backward hooks cannot follow: logged, and
                # occlusion explains instead
                except Exception as exc:  # noqa: BLE001
                    log.warning("Grad-CAM failed (%s); using occlusion from now on", exc)
                    self._module, self._cam = None, None
            if heat is None:
                try:
                    heat = occlusion_map(
                        self.network,
                        sample.array,
                        label_index,
                        self.activation,
                        self.spec.occlusion_grid,
                    )
                except Exception as exc:
                    raise ModelError(
                        f"the occlusion heatmap failed ({type(exc).__name__}: {str(exc)[:200]}); "
                        "run with explain off (RADPILOT_EXPLAIN=false) to skip heatmaps"
                    ) from exc
        return _unit(to_source(heat[None], sample.placement, mode="linear")[0])
