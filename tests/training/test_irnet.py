"""IRNet (002) end to end on a small real crack project: a CAM model trained a few steps,
IRNet trained a few steps on its real CAMs, published, and proposing through the engine."""
from __future__ import annotations

import numpy as np
import pytest
from training_helpers import cfd_project_with_cam

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.training, pytest.mark.slow]


@pytest.fixture
def crack_project_with_cam(tmp_path):
    store, reg = cfd_project_with_cam(tmp_path, num_threads=1)
    yield store, reg
    store.close()


def test_irnet_trains_on_real_cams_publishes_and_proposes(crack_project_with_cam):
    from inference.engine import Engine
    from inference.registry import Registry
    from training.common import TrainOptions
    from training.datasets import read_rgb
    from training.irnet import train_irnet

    store, reg = crack_project_with_cam
    out = train_irnet(TrainOptions(project=store.root, task="irnet", max_steps=3, input_size=(96, 96),
                                   registry=reg, batch_size=2, name="cfd-irnet", num_threads=1,
                                   extra={"cam_model": "cfd-cam", "score_images": 1}))
    info = Registry(reg).get("cfd-irnet", "1")
    man = info.manifest
    assert info.task == "irnet" and info.has("model.onnx")
    assert list(man.classes) == ["crack"]
    tr = man.training
    assert tr["cam_model"] == {"name": "cfd-cam", "version": "1"}
    assert tr["steps"] == 3 and out["steps"] == 3
    assert tr["radius"] == 10 and tr["grid_stride"] == 4
    assert np.isfinite(tr["final_loss"]) and tr["final_loss"] >= 0
    assert tr["onnx_check"]["max_abs_diff"] < 1e-3
    # the relations came from real CAMs: confident grid pixels, and pairs of them in the loss
    # (a CAM trained two steps is confident foreground almost everywhere; the split of
    # foreground and background is the CAM's business, not IRNet's)
    labels = tr["labels"]
    assert labels["foreground"] + labels["background"] > labels["ignored"]
    assert tr["last_parts"]["pairs_fg"] + tr["last_parts"]["pairs_bg"] > 1000
    scored = man.metrics["validation_proposals"]["crack"]
    assert set(scored) == {"cam", "boundary", "instances"}
    for figures in scored.values():
        assert 0.0 <= figures["iou"] <= 1.0 and 0.0 <= figures["coverage"] <= 1.0

    # the engine picks the pipeline by the manifest's task and proposes
    rgb = read_rgb(store.image_file(store.images()[0]))
    engine = Engine(Registry(reg), device="cpu")
    try:
        pipe = engine.pipeline("cfd-irnet")
        assert type(pipe).__name__ == "IRNetPipeline"
        # a few steps of CAM training do not pass the class gate on a whole photo: open it
        proposals = engine.propose(rgb, model="cfd-irnet", params={"class_threshold": 0.0})
    finally:
        engine.close()
    assert proposals, "the irnet pipeline proposed nothing on a photo with cracks"
    palette = {c.name for c in store.palette.classes}
    for p in proposals:
        assert p.mask.image_size == rgb.shape[:2]
        assert p.class_name in palette and p.class_name == "crack"
        assert 0.0 <= p.score <= 1.0
        assert p.mask.area >= 20


def test_relation_loss_is_nil_for_the_field_and_boundary_it_asks_for():
    """002's losses on a grid with a known answer: a displacement field pointing every
    foreground pixel at its centroid and constant on the background, and a boundary
    of 1 exactly between the classes, cost (almost) nothing; a wrong field costs."""
    from inference.random_walk import grid_coordinates, pair_offsets
    from training.irnet import relation_loss

    h, w = 16, 20
    labels = np.zeros((h, w), np.int64)
    labels[4:12, 3:9] = 1
    fg = labels == 1
    coords = grid_coordinates((h, w))
    centre = coords[:, fg].mean(axis=1)[:, None, None]
    disp = np.where(fg[None], centre - coords, 0.0).astype(np.float32)
    boundary = np.zeros((h, w), np.float32)
    inner = np.zeros_like(fg)
    inner[5:11, 4:8] = True
    boundary[fg & ~inner] = 1.0  # the ring of foreground pixels next to the background
    offsets = pair_offsets(4, half=True)
    as_t = lambda a: torch.from_numpy(a)[None]
    loss, parts = relation_loss(as_t(boundary)[:, None], as_t(disp), as_t(labels), offsets)
    assert parts["pairs_fg"] > 0 and parts["pairs_bg"] > 0 and parts["pairs_neg"] > 0
    assert parts["displacement"] < 1e-4
    # every foreground pair inside the ring still sees no boundary, but pairs that cross
    # the ring pay for it: the boundary part is small, not nil
    assert parts["boundary"] < 6.0
    wrong, wparts = relation_loss(as_t(np.zeros_like(boundary))[:, None], as_t(np.zeros_like(disp)),
                                  as_t(labels), offsets)
    assert wparts["displacement"] > 1.0  # a nil field does not explain the foreground's offsets
    assert wparts["boundary"] > 5.0  # no boundary: the negative pairs cost -log(1e-5) each
    assert float(wrong) > float(loss)


def test_same_label_pairs_across_a_thin_crack_are_left_out():
    """Two background pixels on either side of a crack one pixel wide are not asked to see
    no boundary between them (the crack is one)."""
    from training.irnet import relation_loss

    labels = np.zeros((1, 1, 10), np.int64)
    labels[0, 0, 5] = 1
    boundary = torch.zeros((1, 1, 1, 10))
    disp = torch.zeros((1, 2, 1, 10))
    _, parts = relation_loss(boundary, disp, torch.from_numpy(labels), np.array([[0, 4]]))
    # pairs (x, x + 4): (0, 4) is background on both ends with nothing between; (2, 6),
    # (3, 7) and (4, 8) cross the crack at x = 5; (1, 5) and (5, 9) join crack and background
    assert parts["pairs_bg"] == 1
    assert parts["pairs_neg"] == 2
    assert parts["pairs_fg"] == 0
