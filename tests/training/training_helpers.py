"""Helpers of the training tests: small real projects built from ../shared/data."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def data_root() -> Path:
    return Path(os.environ.get("SPECULA_DATA", REPO.parent / "shared" / "data"))


def need_set(name: str) -> Path:
    path = data_root() / name
    if not (path / "image").is_dir():
        pytest.skip(f"data set {name} is missing at {path} (set SPECULA_DATA to the shared data folder)")
    return path


def build_project(folder: Path, set_name: str, ids: list[str], class_name: str, palette: str = "mirror-glass",
                  clicks: bool = False, negatives_per_image: int = 2, seed: int = 0, done: bool = True):
    """Copy images, open a ProjectStore, add accepted instances from the masks
    (one per connected component) and, with ``clicks``, weak clicks: one positive
    per component and ``negatives_per_image`` negatives on background."""
    from PIL import Image

    from annotation.document import ImageStatus, Instance, InstanceState
    from annotation.mask import Mask
    from annotation.palette import builtin_palette
    from annotation.store import ProjectStore

    src = need_set(set_name)
    folder.mkdir(parents=True, exist_ok=True)
    for i in ids:
        shutil.copy(src / "image" / f"{i}.jpg", folder / f"{i}.jpg")
    store = ProjectStore.open(folder, palette=builtin_palette(palette))
    rng = np.random.default_rng(seed)
    for rec in store.images():
        stem = Path(rec.path).stem
        full = np.asarray(Image.open(src / "mask" / f"{stem}.png").convert("L")) > 127
        comps = Mask.from_full(full).components()
        store.add_instances(Instance(rec.id, class_name, m, InstanceState.ACCEPTED) for m in comps)
        if done:  # the data set's mask is the whole truth: everything else is background
            store.set_image_status(rec.id, ImageStatus.DONE)
        if clicks:
            for m in comps[:4]:
                ys, xs = np.nonzero(m.array)
                k = int(rng.integers(len(xs)))
                store.log("weak_click", image_id=rec.id, class_name=class_name,
                          x=float(m.x0 + xs[k]), y=float(m.y0 + ys[k]), positive=True)
            bys, bxs = np.nonzero(~full)
            for _ in range(negatives_per_image):
                k = int(rng.integers(len(bxs)))
                store.log("weak_click", image_id=rec.id, class_name=class_name,
                          x=float(bxs[k]), y=float(bys[k]), positive=False)
    return store


def cfd_project_with_cam(tmp_path: Path, **options):
    """Five CrackForest images (inspection palette, clicks) and a CAM model ``cfd-cam`` trained
    two steps at 64 px into ``tmp_path/registry``: ``(store, registry folder)``."""
    from training.cam import train_cam
    from training.common import TrainOptions

    need_set("cracks-cfd")
    ids = sorted(p.stem for p in (data_root() / "cracks-cfd" / "image").glob("*.jpg"))[:5]
    store = build_project(tmp_path / "cfd", "cracks-cfd", ids, "crack", palette="inspection", clicks=True)
    reg = tmp_path / "registry"
    train_cam(TrainOptions(project=store.root, task="cam", epochs=1, max_steps=2, input_size=(64, 64),
                           registry=reg, batch_size=4, name="cfd-cam", **options))
    return store, reg
