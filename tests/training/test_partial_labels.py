"""Partial labels: an image not marked done teaches only the pixels the expert labelled."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training_helpers import build_project, data_root, need_set

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.training]


def _project(tmp_path: Path, done: bool):
    """A real GDD photo with its glass accepted, and one rejected proposal on the background."""
    from annotation.document import Instance, InstanceState
    from annotation.mask import Mask
    from PIL import Image

    need_set("glass-gdd")
    ids = sorted(p.stem for p in (data_root() / "glass-gdd" / "image").glob("*.jpg"))[:1]
    store = build_project(tmp_path / ("done" if done else "partial"), "glass-gdd", ids, "glass", done=done)
    rec = store.images()[0]
    truth = np.asarray(Image.open(data_root() / "glass-gdd" / "mask" / f"{ids[0]}.png").convert("L")) > 127
    ys, xs = np.nonzero(~truth)
    rejected = np.zeros_like(truth)
    y, x = int(ys[len(ys) // 2]), int(xs[len(xs) // 2])
    rejected[max(0, y - 10): y + 10, max(0, x - 10): x + 10] = True
    rejected &= ~truth
    store.add_instances([Instance(rec.id, "glass", Mask.from_full(rejected), InstanceState.REJECTED)])
    store.close()
    return store.root, truth, rejected


def test_an_image_not_done_leaves_its_unlabelled_pixels_out_and_a_done_one_does_not(tmp_path: Path) -> None:
    from training.datasets import IGNORE, load_project

    root, truth, rejected = _project(tmp_path, done=False)
    (im,) = load_project(root).images
    classes = load_project(root).classes
    glass = classes.index("glass") + 1
    target = im.training_map(classes)
    assert not im.done and im.fully_labelled
    assert (target[truth] == glass).all()  # what was accepted teaches glass
    assert (target[rejected] == 0).all()  # a rejected proposal teaches background
    assert (target[~truth & ~rejected] == IGNORE).all()  # the rest teaches nothing
    # scores still read the image as its truth (held-out images are done or hold masks)
    assert set(np.unique(im.class_map(classes))) <= {0, glass}

    root_done, _, _ = _project(tmp_path, done=True)
    (done,) = load_project(root_done).images
    assert done.done and (done.training_map(classes) == done.class_map(classes)).all()


def test_the_loss_has_no_gradient_on_unlabelled_pixels(tmp_path: Path) -> None:
    from training.datasets import IGNORE, load_project
    from training.semantic import CachedImage, SegmentationDataset, boundary_band, boundary_loss, segmentation_loss

    root, _, _ = _project(tmp_path, done=False)
    data = load_project(root)
    cached = CachedImage(data.images[0], data.classes, (96, 96))
    ds = SegmentationDataset([cached], (96, 96), seed=0, augment=False, boundary=True)
    x, y, band = ds[0]
    assert (y == IGNORE).any() and (y != IGNORE).any()
    # no boundary is drawn around the unlabelled area as if it were a region of its own
    band_ignoring = boundary_band(np.where(y.numpy() == IGNORE, 0, y.numpy()).astype(np.uint8))
    assert (band.numpy() == band_ignoring).all()

    logits = torch.randn(1, 1 + len(data.classes), 96, 96, requires_grad=True)
    loss = segmentation_loss(logits, y[None])
    loss.backward()
    grad = logits.grad.abs().sum(1)[0]
    ignored = y == IGNORE
    assert float(grad[ignored].max()) == 0.0
    assert float(grad[~ignored].min()) > 0.0

    bnd = torch.randn(1, 1, 96, 96, requires_grad=True)
    boundary_loss(bnd, band[None], valid=(y != IGNORE)[None]).backward()
    assert float(bnd.grad[0, 0][ignored].abs().max()) == 0.0 and float(bnd.grad[0, 0][~ignored].abs().max()) > 0.0

    # a batch with nothing labelled costs nothing and still back-propagates
    empty = torch.full((1, 96, 96), IGNORE, dtype=torch.int64)
    assert float(segmentation_loss(torch.randn(1, 1 + len(data.classes), 96, 96), empty)) == 0.0


def test_a_no_of_the_yes_no_review_is_not_a_negative_but_an_editor_rejection_is(tmp_path: Path) -> None:
    """The clustered review asks "is this mask good as it is?": a no (a mask at IoU 0.7 is
    mostly right) says nothing about where the class is, so its pixels stay unknown; the
    same mask rejected in the editor teaches background. The last rejection decides."""
    from annotation.clusters import QUALITY_REVIEW
    from annotation.store import ProjectStore
    from training.datasets import IGNORE, load_project

    root, truth, rejected = _project(tmp_path, done=False)
    with ProjectStore.open(root, scan=False) as store:
        (inst,) = [i for i in store.instances() if i.state.value == "rejected"]
        store.log("reject", image_id=inst.image_id, instance_id=inst.id, class_name="glass",
                  review=QUALITY_REVIEW, cluster=0)
    data = load_project(root)
    (im,) = data.images
    assert im.negatives == [] and not [c for c in im.clicks if c.source == "rejected"]
    assert (im.training_map(data.classes)[rejected] == IGNORE).all()
    # rejected again in the editor afterwards: a negative again
    with ProjectStore.open(root, scan=False) as store:
        store.log("reject", image_id=inst.image_id, instance_id=inst.id, class_name="glass")
    data = load_project(root)
    (im,) = data.images
    assert len(im.negatives) == 1 and (im.training_map(data.classes)[rejected] == 0).all()
