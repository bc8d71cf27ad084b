"""Random changes to whole training batches, drawn from the run's seeded generator.

MONAI's dictionary transforms (``RandAffined`` and friends) draw and apply one transform
per sample in Python; on two CPU cores that is a third of a 64 px training step. Here the
random parameters are drawn for the whole batch at once and applied with MONAI's batched
:class:`monai.networks.layers.AffineTransform` (one ``grid_sample`` call; masks warped
with the same matrices, nearest neighbour). Intensity changes are tensor arithmetic.
Images are in [0, 1] (before normalisation); what fills the corners a rotation or shift
uncovers is ``augment.padding``: the nearest edge pixel (``border``, the default), black
(``zeros``, the letterbox's fill) or a mirror image (``reflection``).
"""

from __future__ import annotations

import math

import torch
from monai.networks.layers.spatial_transforms import AffineTransform

from radpilot.training.config import AugmentConfig

__all__ = ["BatchAugment"]


class BatchAugment:
    """Apply an :class:`AugmentConfig` to batches ``(B, C, H, W)``.

    Parameters
    ----------
    config
        What to change and how much.
    generator
        The run's random generator (CPU), so that a seed fixes every draw.
    """

    def __init__(self, config: AugmentConfig, generator: torch.Generator) -> None:
        self.config = config
        self.gen = generator
        padding = config.padding
        self._warp = AffineTransform(normalized=True, padding_mode=padding, align_corners=False)
        self._warp_mask = AffineTransform(
            normalized=True, mode="nearest", padding_mode=padding, align_corners=False
        )

    def _uniform(self, n: int, half_width: float) -> torch.Tensor:
        return (torch.rand(n, generator=self.gen) * 2.0 - 1.0) * half_width

    def _coin(self, n: int, p: float) -> torch.Tensor:
        return torch.rand(n, generator=self.gen) < p

    def _theta(self, n: int) -> torch.Tensor:
        """Matrices mapping output to input coordinates, normalised, (row, col) order."""
        c = self.config
        angle = self._uniform(n, math.radians(c.rotate_degrees))
        zoom = 1.0 + self._uniform(n, c.scale)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = torch.cos(angle) * zoom
        theta[:, 0, 1] = -torch.sin(angle) * zoom
        theta[:, 1, 0] = torch.sin(angle) * zoom
        theta[:, 1, 1] = torch.cos(angle) * zoom
        theta[:, :, 2] = self._uniform(2 * n, 2.0 * c.translate).view(n, 2)
        return theta

    def __call__(
        self,
        images: torch.Tensor,
        masks: torch.Tensor | None = None,
        boxes: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor] | None]:
        """A changed copy of a batch, with its masks ``(B, H, W)`` or boxes changed alike.

        Boxes (``x0, y0, x1, y1, label`` rows) follow flips only; the config refuses
        rotation, zoom and shift for detection.
        """
        c = self.config
        n, _, height, width = images.shape
        out = images
        if c.spatial:
            theta = self._theta(n)
            out = torch.as_tensor(self._warp(out, theta))
            if masks is not None:
                warped = self._warp_mask(masks[:, None].float(), theta)
                masks = torch.as_tensor(warped)[:, 0].round().long()
        for p, axis in ((c.flip_lr, -1), (c.flip_ud, -2)):
            if not p:
                continue
            flip = self._coin(n, p)
            out = torch.where(flip[:, None, None, None], out.flip(axis), out)
            if masks is not None:
                masks = torch.where(flip[:, None, None], masks.flip(axis), masks)
            if boxes is not None:
                boxes = [
                    _flip_boxes(b, axis, width, height) if f else b
                    for b, f in zip(boxes, flip.tolist(), strict=True)
                ]
        if c.contrast:
            factor = 1.0 + self._uniform(n, c.contrast)
            mean = out.mean(dim=(1, 2, 3), keepdim=True)
            out = (out - mean) * factor[:, None, None, None] + mean
        if c.brightness:
            out = out + self._uniform(n, c.brightness)[:, None, None, None]
        if c.noise_std:
            out = out + torch.randn(out.shape, generator=self.gen) * c.noise_std
        if c.contrast or c.brightness or c.noise_std:
            out = out.clamp(0.0, 1.0)
        return out, masks, boxes


def _flip_boxes(boxes: torch.Tensor, axis: int, width: int, height: int) -> torch.Tensor:
    out = boxes.clone()
    if axis == -1:
        out[:, 0], out[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    else:
        out[:, 1], out[:, 3] = height - boxes[:, 3], height - boxes[:, 1]
    return out
