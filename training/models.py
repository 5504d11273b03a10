"""The networks the trainers build: semantic segmenter, CAM classifier, Mask R-CNN, click refiner.

All take RGB scaled to [0, 1] and normalised with ImageNet mean/std (``(N, 3, H, W)``
float), except Mask R-CNN, which normalises inside (its transform) and takes [0, 1].
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from training.encoders.efficientnet_lite import FEATURE_BLOCKS as _FEATURE_BLOCKS
from training.encoders.efficientnet_lite import EfficientNetLite0, load_imagenet


def conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _up_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


def fpn_levels(lateral: nn.ModuleList, smooth: nn.ModuleList, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The top-down pathway of an FPN over ``feats`` (strides 4-32): each level's lateral
    projection plus the coarser level brought up, smoothed; finest first."""
    p = lateral[3](feats[3])
    outs = [smooth[3](p)]
    for i in (2, 1, 0):
        p = lateral[i](feats[i]) + _up_to(p, feats[i])
        outs.insert(0, smooth[i](p))
    return outs


def fpn_sum(outs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Every FPN level brought up to the finest and added."""
    y = outs[0]
    for o in outs[1:]:
        y = y + _up_to(o, outs[0])
    return y


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
        y = self.fuse(fpn_sum(fpn_levels(self.lateral, self.smooth, [f4, f8, f16, f32])))
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



# --------------------------------------------------------------------------- click refinement
class ClickNet(nn.Module):
    """Click refinement (``task clicks``): an image crop and ``aux`` maps -> mask logits.

    ``aux`` ``(N, 3, H, W)``: the previous mask (0..1), positive click disks, negative click
    disks (``inference.pipelines.clicks.aux_input``); output ``(N, 1, H, W)`` logits. H and W
    multiples of 32. Two designs, both on the ImageNet EfficientNet-Lite0:

    - ``fusion="early"`` (RITM's Conv1S, with ``SemanticNet``'s FPN): the aux maps go
      through two convolutions whose last is zero-initialised and are added to the
      encoder's stem convolution, so the
      network starts as the pretrained one and learns how much the clicks move it (they
      also join the stride-2 stage of the decoder); the whole network runs per click
      (one ONNX file);
    - ``fusion="late"`` (the default model's): the image alone is encoded by the ImageNet
      encoder, kept frozen, once per crop (``encoder.onnx``), and a light head (no FPN:
      projections, dilated context at stride 16, up to stride 2) takes its five maps
      with the aux maps (``decoder.onnx``). Frozen features can be cached, so on a CPU
      the head trains thousands of steps in minutes, and each click costs only the head.

    ``encode(image)`` -> a tuple of tensors, ``head(features, aux)`` -> logits, so the
    trainer and the pipeline treat both alike (for ``early``, ``encode`` is the identity).
    """

    AUX_CHANNELS = 3

    def __init__(self, fusion: str = "early", pretrained: bool = True, width: int = 64):
        super().__init__()
        if fusion not in ("early", "late"):
            raise ValueError(f"fusion {fusion!r}: use early or late")
        self.fusion = fusion
        self.encoder = EfficientNetLite0(head=False)
        if pretrained:
            load_imagenet(self.encoder)
        chans = (24, 40, 112, 320)  # strides 4, 8, 16, 32
        if fusion == "early":
            # SemanticNet's FPN with separable 3x3 convolutions: its full ones at strides 4
            # and 2 cost more than the encoder (2.9 GMAC at 384 px), paid on every click
            self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in chans)
            self.smooth = nn.ModuleList(_separable(width, width) for _ in chans)
            self.fuse = _separable(width, width)
            self.aux_stem = nn.Sequential(nn.Conv2d(self.AUX_CHANNELS, 16, 3, padding=1), nn.ReLU(inplace=True),
                                          nn.Conv2d(16, 32, 3, stride=2, padding=1))
            # zero: at the start the encoder sees exactly what ImageNet trained it on
            nn.init.zeros_(self.aux_stem[2].weight)
            nn.init.zeros_(self.aux_stem[2].bias)
            # the maps again at stride 2: the previous mask reaches the output without
            # crossing the encoder (a short CPU training learns to keep it much sooner)
            self.fine = nn.Sequential(conv_bn_relu(width + 16 + self.AUX_CHANNELS, 32, 1), _separable(32, 32))
            self.classifier = nn.Conv2d(32, 1, 1)
        else:
            # the encoder is frozen (ImageNet) and its maps are computed once per crop
            # (encoder.onnx; cached features in training), so all that learns and runs
            # per click is this head: projections of the maps, the click maps brought
            # down to each stride, dilated context at stride 16, then up to stride 2
            self.aux2 = nn.Sequential(nn.Conv2d(self.AUX_CHANNELS, 16, 3, 2, 1), nn.ReLU(inplace=True))
            self.aux4 = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(inplace=True))
            self.aux8 = nn.Sequential(nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU(inplace=True))
            self.aux16 = nn.Sequential(nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU(inplace=True))
            self.p16 = conv_bn_relu(112 + 320, width, 1)
            self.ctx_in = conv_bn_relu(width + 32, width, 1)
            self.ctx = nn.ModuleList(nn.Sequential(nn.Conv2d(width, width, 3, padding=d, dilation=d, bias=False),
                                                   nn.BatchNorm2d(width), nn.ReLU(inplace=True)) for d in (1, 2, 4, 8))
            self.mid8 = nn.Sequential(conv_bn_relu(width + 40 + 32, 48, 1), _separable(48, 48))
            self.mid4 = nn.Sequential(conv_bn_relu(48 + 24 + 32, 32, 1), _separable(32, 32))
            self.top = nn.Sequential(conv_bn_relu(32 + 16 + 16, 16, 1), _separable(16, 16))
            self.classifier = nn.Conv2d(16, 1, 1)

    def _fpn(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """FPN over strides 4-32: (fused map at stride 4, the stride-16 level)."""
        outs = fpn_levels(self.lateral, self.smooth, feats)
        return self.fuse(fpn_sum(outs)), outs[2]

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``early``: ``(image,)``; ``late``: the encoder's maps at strides 2, 4, 8, 16, 32."""
        if self.fusion == "early":
            return (image,)
        return tuple(self.encoder.features(image))

    def head(self, features: Sequence[torch.Tensor], aux: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, 1, H, W)`` from ``encode``'s output and the aux maps."""
        if self.fusion == "early":
            image = features[0]
            e = self.encoder
            x = e.act(e._bn0(e._conv_stem(image) + self.aux_stem(aux)))
            out = []
            for i, block in enumerate(e._blocks):
                x = block(x)
                if i in _FEATURE_BLOCKS:
                    out.append(x)
            f2, f4, f8, f16, f32 = out
            y, _ = self._fpn([f4, f8, f16, f32])
            y = self.fine(torch.cat([_up_to(y, f2), f2, F.avg_pool2d(aux, 2)], 1))
            return _up_to(self.classifier(y), image)
        f2, f4, f8, f16, f32 = features
        a2 = self.aux2(aux)
        a4 = self.aux4(a2)
        a8 = self.aux8(a4)
        a16 = self.aux16(a8)
        z = self.p16(torch.cat([f16, _up_to(f32, f16)], 1))
        z = self.ctx_in(torch.cat([z, a16], 1))
        for block in self.ctx:
            z = z + block(z)
        z = self.mid8(torch.cat([_up_to(z, f8), f8, a8], 1))
        z = self.mid4(torch.cat([_up_to(z, f4), f4, a4], 1))
        z = self.top(torch.cat([_up_to(z, f2), f2, a2], 1))
        return F.interpolate(self.classifier(z), size=aux.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, image: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(image), aux)


def _separable(cin: int, cout: int) -> nn.Sequential:
    """Depthwise 3x3 then pointwise: a 3x3 view at a fraction of a full convolution's cost."""
    return nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                         nn.ReLU(inplace=True), conv_bn_relu(cin, cout, 1))


class ClickEncoder(nn.Module):
    """``ClickNet.encode`` as a module (the late design's ``encoder.onnx``)."""

    def __init__(self, net: ClickNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        return self.net.encode(image)


class ClickHead(nn.Module):
    """``ClickNet.head`` as a module (``decoder.onnx``): the encoder's five maps, then aux."""

    def __init__(self, net: ClickNet):
        super().__init__()
        self.net = net

    def forward(self, f2: torch.Tensor, f4: torch.Tensor, f8: torch.Tensor, f16: torch.Tensor, f32: torch.Tensor,
                aux: torch.Tensor) -> torch.Tensor:
        return self.net.head((f2, f4, f8, f16, f32), aux)
