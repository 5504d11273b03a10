"""The CAM model trained on weak clicks proposes cracks, not whole photos (issue 17).

A small real crack project (CrackForest photos whose masks are accepted and which are
marked done, so the trainer places the clicks an expert would: one per crack piece of
each click patch, one per clean patch), two epochs of ``training.cam``, published, then
the engine proposes with the model's own defaults on held-out photos. Before the fix
the proposals covered 99 % of every photo.
"""
from __future__ import annotations

import numpy as np
import pytest
from training_helpers import build_project, data_root, need_set

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.training, pytest.mark.slow]


def test_cam_proposals_cover_cracks_not_photos(tmp_path):
    from inference.engine import Engine
    from inference.registry import Registry
    from training.cam import train_cam
    from training.common import Reporter, TrainOptions
    from training.datasets import read_rgb

    cfd = need_set("cracks-cfd")
    stems = sorted(p.stem for p in (cfd / "image").glob("*.jpg"))
    train_stems, held_out = stems[:6], stems[-3:]
    store = build_project(tmp_path / "cfd", "cracks-cfd", train_stems, "crack", palette="inspection", clicks=False)
    store.close()
    reg = tmp_path / "registry"
    torch.set_num_threads(1)
    train_cam(TrainOptions(project=tmp_path / "cfd", task="cam", epochs=2, registry=reg, name="cfd-cam",
                           num_threads=1), reporter=Reporter(enabled=False))
    info = Registry(reg).get("cfd-cam", "1")
    clicks = info.manifest.training["clicks"]["train"]
    assert clicks["positive"] > 0 and clicks["negative"] > 0  # derived from the masks, both kinds
    post = info.manifest.defaults
    assert set(post) == {"floor_quantile", "threshold"}

    engine = Engine(Registry(reg), device="cpu")
    ious, baseline, coverage = [], [], []
    try:
        for stem in held_out:
            rgb = read_rgb(data_root() / "cracks-cfd" / "image" / f"{stem}.jpg")
            truth = np.asarray(read_rgb(data_root() / "cracks-cfd" / "mask" / f"{stem}.png"))[..., 0] > 127
            pred = np.zeros(truth.shape, bool)
            for p in engine.propose(rgb, model="cfd-cam"):  # the manifest's defaults: the product's path
                assert p.class_name == "crack"
                pred |= p.mask.to_full()
            coverage.append(float(pred.mean()))
            ious.append(float((pred & truth).sum()) / float((pred | truth).sum()))
            baseline.append(float(truth.mean()))  # IoU of proposing every pixel as crack
    finally:
        engine.close()
    assert all(c < 0.5 for c in coverage), f"proposals cover {coverage} of the held-out photos"
    assert all(c > 0 for c in coverage), f"no proposal on some held-out photo: coverage {coverage}"
    assert float(np.mean(ious)) > 3 * float(np.mean(baseline)), (
        f"CAM IoU per image {ious} (mean {np.mean(ious):.3f}) against the all-crack baseline {np.mean(baseline):.3f}")


def test_noise_floor_is_subtracted_before_the_threshold():
    """A crack line at 1.0 over texture at 0.1-0.3 of it: divided by the maximum alone, 003's
    cut at 0.1 keeps the texture; with the floor (the map's 95 % quantile) subtracted, the line."""
    from inference.pipelines.cam import normalise_cam

    rng = np.random.default_rng(0)
    acc = rng.uniform(0.1, 0.3, (100, 200)).astype(np.float32)
    acc[50, :] = 1.0  # 1 % of the map
    plain = normalise_cam(acc, 0.0)
    assert float(plain.max()) == 1.0 and float((plain > 0.1).mean()) > 0.9
    floored = normalise_cam(acc, 0.95)
    assert float(floored.max()) == 1.0
    kept = floored > 0.1
    assert kept[50].all() and int(kept.sum()) == 200
    assert not normalise_cam(np.zeros((4, 4), np.float32), 0.95).any()
