"""The networks the trainers build: semantic segmenter, CAM classifier, Mask R-CNN.

All take RGB scaled to [0, 1] and normalised with ImageNet mean/std (``(N, 3, H, W)``
float), except Mask R-CNN, which normalises inside (its transform) and takes [0, 1].
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from training.encoders.efficientnet_lite import EfficientNetLite0, load_imagenet


def conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _up_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------- semantic
class SemanticNet(nn.Module):
    """EfficientNet-Lite0 encoder + a light FPN decoder with a stride-2 skip.

    ``(N, 3, H, W)`` -> logits ``(N, K, H, W)`` where ``K = 1 + len(classes)``
    (channel 0 is background). H and W should be multiples of 32.
    """

    def __init__(self, num_outputs: int, pretrained: bool = True, width: int = 64, boundary: bool = False):
        super().__init__()
        self.has_boundary = bool(boundary)
        self.encoder = EfficientNetLite0(head=False)
        if pretrained:
            load_imagenet(self.encoder)
        chans = (24, 40, 112, 320)  # strides 4, 8, 16, 32
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in chans)
        self.smooth = nn.ModuleList(conv_bn_relu(width, width) for _ in chans)
        self.fuse = conv_bn_relu(width, width)
        self.fine = conv_bn_relu(width + 16, 32)  # stride-2 detail (thin cracks)
        self.classifier = nn.Conv2d(32, num_outputs, 1)
        # pane splitting: one logit per pixel for "on the boundary between two truth
        # regions", from the same stride-2 features (frames between panes are thin)
        self.boundary = nn.Conv2d(32, 1, 1) if boundary else None

    def forward(self, x: torch.Tensor):
        """Logits ``(N, K, H, W)``; with the boundary head, ``(logits, boundary logits (N, 1, H, W))``."""
        f2, f4, f8, f16, f32 = self.encoder.features(x)
        feats = [f4, f8, f16, f32]
        p = self.lateral[3](f32)
        outs = [self.smooth[3](p)]
        for i in (2, 1, 0):
            p = self.lateral[i](feats[i]) + _up_to(p, feats[i])
            outs.insert(0, self.smooth[i](p))
        y = outs[0]
        for o in outs[1:]:
            y = y + _up_to(o, outs[0])
        y = self.fuse(y)
        y = self.fine(torch.cat([_up_to(y, f2), f2], 1))
        logits = _up_to(self.classifier(y), x)
        if self.boundary is None:
            return logits
        return logits, _up_to(self.boundary(y), x)


# --------------------------------------------------------------------------- CAM (003)
class CamNet(nn.Module):
    """U-Net classifier of 003: a shallow encoder, a decoder back to full resolution,
    and the classification head on the decoder (global average pool -> linear).

    ``forward(x)`` with ``x`` ``(N, 3, H, W)`` returns ``(logits (N, C), features
    (N, F, H, W))``; ``logits = fc(mean_hw(features))``, so Grad-CAM on
    ``features`` is a full-resolution CAM. Encoders:

    - ``resnet34`` (the paper): conv1 at stride 1, maxpool, layer1 (stride 2),
      layer2 (stride 4); from scratch unless ``--init`` gives weights;
    - ``efficientnet-lite0``: stem at stride 1, blocks 0 (stride 1), 1-2 (stride 2),
      3-4 (stride 4), ImageNet-initialised.
    """

    feature_channels = 32

    def __init__(self, num_classes: int, encoder: str = "efficientnet-lite0", pretrained: bool = True):
        super().__init__()
        self.encoder_name = encoder
        if encoder == "resnet34":
            from torchvision.models import resnet34

            r = resnet34(weights=None)
            r.conv1.stride = (1, 1)
            self.stem = nn.Sequential(r.conv1, r.bn1, r.relu)
            self.down1 = nn.Sequential(r.maxpool, r.layer1)
            self.down2 = r.layer2
            skip0, skip1, deep = 64, 64, 128
        elif encoder == "efficientnet-lite0":
            e = EfficientNetLite0(stem_stride=1, num_blocks=5, head=False)
            if pretrained:
                load_imagenet(e)
            self.stem = nn.Sequential(e._conv_stem, e._bn0, nn.ReLU6(inplace=True), e._blocks[0])
            self.down1 = nn.Sequential(e._blocks[1], e._blocks[2])
            self.down2 = nn.Sequential(e._blocks[3], e._blocks[4])
            skip0, skip1, deep = 16, 24, 40
        else:
            raise ValueError(f"unknown CAM encoder {encoder!r}; use efficientnet-lite0 or resnet34")
        self.up1 = nn.Sequential(conv_bn_relu(deep + skip1, 64), conv_bn_relu(64, 64))
        self.up0 = nn.Sequential(conv_bn_relu(64 + skip0, 32), conv_bn_relu(32, self.feature_channels))
        self.fc = nn.Linear(self.feature_channels, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem(x)
        s1 = self.down1(s0)
        s2 = self.down2(s1)
        y = self.up1(torch.cat([_up_to(s2, s1), s1], 1))
        feats = self.up0(torch.cat([_up_to(y, s0), s0], 1))
        logits = self.fc(feats.mean(dim=(2, 3)))
        return logits, feats


# --------------------------------------------------------------------------- instance (001)
class Lite0FPN(nn.Module):
    """EfficientNet-Lite0 + torchvision FPN, the backbone interface ``MaskRCNN`` wants.

    ``(N, 3, H, W)`` -> ordered dict ``'0'..'3'`` (strides 4-32) plus ``'pool'`` (64),
    each with ``out_channels`` channels.
    """

    def __init__(self, pretrained: bool = True, out_channels: int = 128):
        super().__init__()
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        self.body = EfficientNetLite0(head=False)
        if pretrained:
            load_imagenet(self.body)
        self.fpn = FeaturePyramidNetwork([24, 40, 112, 320], out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor):
        from collections import OrderedDict

        feats = self.body.features(x)[1:]
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


# Mask R-CNN defaults from 001 (its Matterport config, mapped to torchvision's names)
MASKRCNN_DEFAULTS = {
    "image_size": 512,  # IMAGE_MIN_DIM = IMAGE_MAX_DIM = 512
    "anchor_sizes": (16, 32, 64, 128, 256),  # RPN_ANCHOR_SCALES
    "aspect_ratios": (0.5, 1.0, 2.0),
    "rpn_nms_thresh": 0.8,  # RPN_NMS_THRESHOLD
    "box_score_thresh": 0.7,  # DETECTION_MIN_CONFIDENCE
    "lr": 1e-3,  # LEARNING_RATE, divided by 10 for the last third of the epochs
}


def build_maskrcnn(
    num_classes: int,
    backbone: str = "efficientnet-lite0",
    pretrained: bool = True,
    image_size: int = 512,
    anchor_sizes: Sequence[int] = MASKRCNN_DEFAULTS["anchor_sizes"],
    aspect_ratios: Sequence[float] = MASKRCNN_DEFAULTS["aspect_ratios"],
    rpn_nms_thresh: float = 0.8,
    box_score_thresh: float = 0.7,
    box_detections_per_img: int = 100,
):
    """torchvision ``MaskRCNN`` with 001's configuration; ``num_classes`` includes background.

    ``backbone``: ``efficientnet-lite0`` (ImageNet init, light enough for a CPU) or
    ``resnet50`` (``maskrcnn_resnet50_fpn``, no weights unless ``--init``).
    """
    from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    anchors = AnchorGenerator(tuple((s,) for s in anchor_sizes), (tuple(aspect_ratios),) * len(anchor_sizes))
    common = dict(
        min_size=image_size, max_size=image_size, rpn_anchor_generator=anchors,
        rpn_nms_thresh=rpn_nms_thresh, box_score_thresh=box_score_thresh,
        box_detections_per_img=box_detections_per_img,
    )
    if backbone == "resnet50":
        return maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes, **common)
    if backbone != "efficientnet-lite0":
        raise ValueError(f"unknown Mask R-CNN backbone {backbone!r}; use efficientnet-lite0 or resnet50")
    return MaskRCNN(Lite0FPN(pretrained=pretrained), num_classes=num_classes, **common)

