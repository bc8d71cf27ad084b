"""MONAI's RetinaNet on a small MONAI ResNet with a feature pyramid, and its export.

MONAI's own ``resnet_fpn_feature_extractor`` and the detector's default matcher need
torchvision, which radpilot does not install; the pyramid here is MONAI's
``FeaturePyramidNetwork`` on the ResNet's stages, and training uses MONAI's ATSS matcher
(:class:`RadpilotDetector` overrides the one method that checks for torchvision's).

The exported module (:class:`DetectionExport`) is what the runtime expects of a detector:
``(N, K, 6)`` rows ``x0, y0, x1, y1, score, label_index`` in input pixels (column, row),
score a probability, ``-1`` rows as padding. It decodes the regression against anchors
computed once for the fixed input size, keeps the ``K`` best anchors and suppresses
overlaps with *Fast NMS* (a box is dropped when a higher-scoring box of the same label
overlaps it more than the threshold, whether or not that box survived): unlike greedy
NMS it is a fixed number of tensor operations, so it traces to TorchScript, at the cost
of occasionally dropping a box greedy NMS would keep next to a suppressed one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
from monai.apps.detection.networks.retinanet_network import RetinaNet
from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape
from monai.networks.blocks.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool
from monai.networks.nets.resnet import ResNet
from torch import Tensor, nn

from radpilot.core.errors import ConfigurationError

__all__ = ["DetectionExport", "RadpilotDetector", "ResNetFPN", "build_detector"]

_BACKBONE = {
    "block": "basic",
    "layers": [1, 1, 1, 1],
    "block_inplanes": [8, 16, 32, 64],
    "conv1_t_size": 3,
    "conv1_t_stride": 2,
    "no_max_pool": True,
}
_CLIP = math.log(1000.0 / 16)


class ResNetFPN(nn.Module):
    """A MONAI ResNet's stages ``returned_layers`` fed to MONAI's feature pyramid."""

    def __init__(
        self, backbone: ResNet, widths: Sequence[int], returned: Sequence[int], out_channels: int
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.returned = [int(r) for r in returned]
        self.out_channels = out_channels
        expansion = int(getattr(backbone.layer1[0], "expansion", 1))  # 4 for bottlenecks
        self.fpn = FeaturePyramidNetwork(
            spatial_dims=2,
            in_channels_list=[int(widths[r - 1]) * expansion for r in self.returned],
            out_channels=out_channels,
            extra_blocks=LastLevelMaxPool(2),
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Pyramid levels, finest first."""
        b = self.backbone
        x = b.act(b.bn1(b.conv1(x)))
        if not b.no_max_pool:
            x = b.maxpool(x)
        features: dict[str, Tensor] = {}
        for index, layer in enumerate((b.layer1, b.layer2, b.layer3, b.layer4), start=1):
            if index > max(self.returned):
                break
            x = layer(x)
            if index in self.returned:
                features[str(index)] = x
        out: dict[str, Tensor] = self.fpn(features)
        return out


class RadpilotDetector(RetinaNetDetector):
    """MONAI's RetinaNet detector, matching anchors with ATSS only (no torchvision)."""

    def compute_anchor_matched_idxs(
        self,
        anchors: list[Tensor],
        targets: list[dict[str, Tensor]],
        num_anchor_locs_per_level: Sequence[int],
    ) -> list[Tensor]:
        """Per image, the matched box index of every anchor (-1: background)."""
        matched = []
        for anchors_per_image, target in zip(anchors, targets, strict=True):
            boxes = target[self.target_box_key]
            if boxes.numel() == 0:
                matched.append(torch.full((anchors_per_image.size(0),), -1, dtype=torch.int64))
                continue
            _, index = self.proposal_matcher(
                boxes, anchors_per_image, num_anchor_locs_per_level, self.num_anchors_per_loc
            )
            matched.append(index)
        return matched


def build_detector(
    kwargs: dict[str, Any], in_channels: int, classes: int, size: Sequence[int], seed: int
) -> RadpilotDetector:
    """RetinaNet (ResNet + FPN backbone) wrapped in a detector set up for training.

    Raises
    ------
    ConfigurationError
        If the backbone arguments are refused or the input size does not fit the network.
    """
    backbone_args = {**_BACKBONE, **kwargs.get("backbone", {})}
    returned = list(kwargs.get("returned_layers", [1, 2]))
    shapes = [tuple(s) for s in kwargs.get("anchor_shapes", [[8, 8], [16, 16]])]
    torch.manual_seed(seed)
    try:
        backbone = ResNet(
            spatial_dims=2, n_input_channels=in_channels, num_classes=1, **backbone_args
        )
        extractor = ResNetFPN(
            backbone, backbone_args["block_inplanes"], returned, int(kwargs.get("fpn_channels", 32))
        )
        stride = int(backbone.conv1.stride[0]) * (1 if backbone.no_max_pool else 2)
        divisible = stride * 2 ** max(returned)
        scales = tuple(2**i for i in range(len(returned) + 1))
        anchors = AnchorGeneratorWithAnchorShape(
            feature_map_scales=scales, base_anchor_shapes=shapes
        )
        network = RetinaNet(
            spatial_dims=2,
            num_classes=classes,
            num_anchors=len(shapes),
            feature_extractor=extractor,
            size_divisible=divisible,
        )
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise ConfigurationError(
            f"network.kwargs: RetinaNet could not be built ({type(exc).__name__}: {exc})"
        ) from exc
    if any(s % divisible for s in size):
        raise ConfigurationError(
            f"input.size {list(size)} must be a multiple of {divisible} for this RetinaNet"
        )
    detector = RadpilotDetector(network, anchors)
    detector.set_atss_matcher(num_candidates=4, center_in_gt=False)
    detector.set_hard_negative_sampler(
        batch_size_per_image=64, positive_fraction=0.3, pool_size=20, min_neg=16
    )
    detector.set_target_keys(box_key="boxes", label_key="labels")
    return detector


class DetectionExport(nn.Module):
    """Normalised images in, ``(N, K, 6)`` boxes out (see the module docstring)."""

    centre: Tensor  # anchor centres (row, col), a buffer
    extent: Tensor  # anchor sizes (rows, cols), a buffer

    def __init__(
        self,
        detector: RadpilotDetector,
        size: Sequence[int],
        channels: int,
        *,
        max_detections: int,
        score_threshold: float,
        nms_threshold: float,
    ) -> None:
        super().__init__()
        network: nn.Module = detector.network
        self.network = network
        self.num_anchors = int(detector.num_anchors_per_loc)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.height, self.width = int(size[0]), int(size[1])
        with torch.no_grad():
            probe = torch.zeros(1, channels, self.height, self.width)
            head = self.network.eval()(probe)
            anchors = detector.anchor_generator(probe, head[self.network.cls_key])[0]
        centre = 0.5 * (anchors[:, :2] + anchors[:, 2:])
        self.register_buffer("centre", centre)
        self.register_buffer("extent", anchors[:, 2:] - anchors[:, :2])
        self.k = min(max_detections, int(anchors.shape[0]))

    def _flat(self, maps: list[Tensor]) -> Tensor:
        parts = []
        for m in maps:
            n, c = m.shape[0], m.shape[1] // self.num_anchors
            parts.append(
                m.view(n, self.num_anchors, c, m.shape[2], m.shape[3])
                .permute(0, 3, 4, 1, 2)
                .reshape(n, -1, c)
            )
        return torch.cat(parts, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """Boxes ``(N, K, 6)``: column/row corners, probability, label index; -1 padding."""
        head = self.network(x)
        logits = self._flat(head[self.network.cls_key])
        codes = self._flat(head[self.network.box_reg_key])
        centre = codes[..., :2] * self.extent + self.centre  # (row, col) order, as MONAI's
        extent = torch.exp(codes[..., 2:].clamp(max=_CLIP)) * self.extent
        lower, upper = centre - 0.5 * extent, centre + 0.5 * extent
        limit = torch.tensor([float(self.height), float(self.width)])
        lower = torch.minimum(torch.clamp(lower, min=0.0), limit)
        upper = torch.minimum(torch.clamp(upper, min=0.0), limit)
        score, label = logits.sigmoid().max(dim=2)
        score, order = score.topk(self.k, dim=1)
        lower = lower.gather(1, order[..., None].expand(-1, -1, 2))
        upper = upper.gather(1, order[..., None].expand(-1, -1, 2))
        label = label.gather(1, order)
        inter = (
            (
                torch.minimum(upper[:, :, None], upper[:, None])
                - torch.maximum(lower[:, :, None], lower[:, None])
            )
            .clamp(min=0)
            .prod(-1)
        )
        area = (upper - lower).prod(-1)
        iou = inter / (area[:, :, None] + area[:, None] - inter).clamp(min=1e-9)
        iou = iou * (label[:, :, None] == label[:, None]).float()
        higher = torch.ones(self.k, self.k).triu(diagonal=1)  # [j, i]: j scored above i
        worst = (iou * higher).max(dim=1).values
        keep = (worst <= self.nms_threshold) & (score >= self.score_threshold)
        rows = torch.stack(
            [lower[..., 1], lower[..., 0], upper[..., 1], upper[..., 0], score, label.float()],
            dim=2,
        )
        return torch.where(keep[..., None], rows, torch.full_like(rows, -1.0))
