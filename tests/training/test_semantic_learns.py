"""Training really learns: a few minutes on a handful of GDD images beat the untrained network."""
from __future__ import annotations

import pytest

from training_helpers import build_project, data_root, need_set

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.training, pytest.mark.slow]


def test_semantic_beats_untrained_on_held_out_gdd(tmp_path):
    from inference.registry import Registry
    from training.common import TrainOptions, seed_everything
    from training.datasets import load_project, split_by_image
    from training.models import SemanticNet
    from training.semantic import evaluate, train_semantic

    need_set("glass-gdd")
    ids = sorted(p.stem for p in (data_root() / "glass-gdd" / "image").glob("*.jpg"))[:12]
    store = build_project(tmp_path / "gdd", "glass-gdd", ids, "glass")
    opts = TrainOptions(project=store.root, task="semantic", epochs=40, max_steps=40, input_size=(128, 128),
                        registry=tmp_path / "reg", batch_size=4, val_fraction=0.3, seed=3, lr=2e-3, name="learn",
                        extra={"val_every": 1000, "val_max_side": 384})
    data = load_project(store)
    _, val = split_by_image([im for im in data.images if im.fully_labelled], opts.val_fraction, opts.seed)
    assert len(val) >= 2

    seed_everything(opts.seed)
    untrained = evaluate(SemanticNet(1 + len(data.classes)), val, data.classes, (128, 128), torch.device("cpu"),
                         max_side=384)["per_class"]["glass"]
    train_semantic(opts)
    trained = Registry(tmp_path / "reg").get("learn", "1").manifest.metrics["validation"]["per_class"]["glass"]
    assert trained["iou"] > untrained["iou"] + 0.05, (trained, untrained)
    assert trained["mae"] < untrained["mae"], (trained, untrained)
    store.close()
