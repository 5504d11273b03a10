"""Post-processing at the network's resolution against the reference full-resolution path.

- the box resize samples exactly the grid of the whole-map resize, and the widened
  network map holds every full-resolution pixel that can pass the threshold;
- without pane splitting, the shipped glass model's proposals are the reference's, mask
  for mask, on real GDD photos (also at an image size sharing no factor with 384);
- with everything the shipped models do (flip TTA, the boundary head's pane splitting,
  native-resolution cracks), on their held-out test photos: mean mask IoU >= 0.98 and
  the same count within one on every photo;
- raw scores are thresholded where the activation allows it, with the same proposals.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.engine import Engine
from inference.pipelines.base import NetworkMaps, semantic_network_maps
from inference.pipelines.postprocess import _Axis, resize_box
from inference.registry import Registry
from inference_testmodels import colour_model, conv_stack, manifest, scene

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "assets" / "models"
SETS = {"mirror-glass-semantic": ("glass-gdd",), "cracks-semantic": ("cracks-deepcrack", "cracks-cfd")}


def data_root() -> Path:
    return Path(os.environ.get("SPECULA_DATA", REPO.parent / "shared" / "data"))


def read(path: Path) -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1])


def shipped_pipeline(name: str):  # type: ignore[no-untyped-def]
    folders = sorted((SHIPPED / name).glob("*/manifest.json"))
    if not folders:
        pytest.skip(f"no shipped {name} in {SHIPPED}")
    engine = Engine(Registry(Path(os.environ["SPECULA_HOME"]) / "reg", [SHIPPED]), device="cpu")
    pipe = engine.pipeline(name)
    # one network pass per distinct input: both paths see the very same maps, and the
    # test pays for the network once
    run, seen = pipe._run, {}

    def cached(x: np.ndarray) -> list[np.ndarray]:
        key = hashlib.sha1(x.tobytes()).hexdigest()
        if key not in seen:
            seen.clear()
            seen[key] = run(x)
        return seen[key]

    pipe._run = cached
    return pipe


def held_out(pipe, sets: tuple[str, ...]) -> list[Path]:  # type: ignore[no-untyped-def]
    keys = [k for k in pipe.manifest.training["data"]["test_image_keys"] if k.split("/")[0] in sets]
    paths = [data_root() / k for k in keys if (data_root() / k).is_file()]
    if len(paths) < len(keys):
        pytest.skip(f"test photos of {', '.join(sets)} are missing under {data_root()} (set SPECULA_DATA)")
    return paths


def best_iou(ref, new) -> list[float]:  # type: ignore[no-untyped-def]
    return [max([r.mask.iou(q.mask) for q in new if q.class_name == r.class_name] or [0.0]) for r in ref]


@pytest.mark.parametrize("src,dst", [((384, 384), (1024, 1280)), ((384, 384), (3024, 4032)),
                                     ((384, 384), (1279, 997)), ((384, 384), (200, 300)), ((100, 60), (100, 61))])
def test_resize_box_is_the_whole_resize_cropped(src: tuple[int, int], dst: tuple[int, int]) -> None:
    rng = np.random.default_rng(7)
    m = rng.random(src).astype(np.float32)
    whole = cv2.resize(m, (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR)
    ay, ax = _Axis(src[0], dst[0]), _Axis(src[1], dst[1])
    for _ in range(40):
        y0 = int(rng.integers(0, dst[0]))
        x0 = int(rng.integers(0, dst[1]))
        y1, x1 = int(rng.integers(y0 + 1, dst[0] + 1)), int(rng.integers(x0 + 1, dst[1] + 1))
        box = resize_box(m, ay, ax, (y0, y1, x0, x1))
        assert box.shape == (y1 - y0, x1 - x0)
        assert np.abs(box - whole[y0:y1, x0:x1]).max() <= 1e-5


@pytest.mark.parametrize("dst", [(1024, 1280), (1279, 997), (150, 170)])
def test_widened_map_holds_every_pixel_that_passes(dst: tuple[int, int]) -> None:
    rng = np.random.default_rng(3)
    m = cv2.GaussianBlur(rng.random((384, 384)).astype(np.float32), (0, 0), 2)
    thr = float(np.quantile(m, 0.7))
    whole = cv2.resize(m, (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR) > thr
    widened = cv2.dilate((m > thr).view(np.uint8), np.ones((3, 3), np.uint8)) > 0
    ay, ax = _Axis(384, dst[0]), _Axis(384, dst[1])
    nearest = widened[np.ix_(ay.near, ax.near)]
    assert whole.any() and not (whole & ~nearest).any()
    # and the widening is needed: without it, pixels that pass would be missed
    assert (whole & ~(m > thr)[np.ix_(ay.near, ax.near)]).any()


def gdd_photos(n: int) -> list[Path]:
    root = data_root() / "glass-gdd" / "image"
    if not root.is_dir():
        pytest.skip(f"glass-gdd is missing at {root} (set SPECULA_DATA)")
    return sorted(root.glob("*.jpg"))[:n]


def test_without_pane_splitting_the_proposals_are_the_reference_ones() -> None:
    pipe = shipped_pipeline("mirror-glass-semantic")
    photos = gdd_photos(6)
    odd = read(photos[0])[:1279, :997]  # sides sharing no factor with 384: whole-axis resizes
    for rgb in [read(p) for p in photos] + [np.ascontiguousarray(odd)]:
        ref = pipe.propose(rgb, {"full_resolution": True, "split_panes": False})
        new = pipe.propose(rgb, {"split_panes": False})
        assert ref and [p.mask for p in new] == [p.mask for p in ref]
        assert [p.class_name for p in new] == [p.class_name for p in ref]
        assert np.allclose([p.score for p in new], [p.score for p in ref], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mirror-glass-semantic", "cracks-semantic"])
def test_proposals_agree_with_the_reference_path_on_held_out_photos(name: str) -> None:
    pipe = shipped_pipeline(name)
    photos = held_out(pipe, SETS[name])
    per_photo, counts, all_ious = [], [], []
    for path in photos:
        rgb = read(path)
        ref = pipe.propose(rgb, {"full_resolution": True})
        new = pipe.propose(rgb)
        ious = best_iou(ref, new)
        all_ious += ious
        per_photo.append(float(np.mean(ious)) if ious else 1.0)
        counts.append(len(new) - len(ref))
        assert abs(len(new) - len(ref)) <= 1, (path.name, len(ref), len(new))
    mean = float(np.mean(per_photo))
    print(json.dumps({"model": name, "photos": len(photos), "mean_iou_per_photo": round(mean, 4),
                      "mean_iou_per_proposal": round(float(np.mean(all_ious)), 4),
                      "photos_with_other_count": int(np.count_nonzero(counts))}))
    assert mean >= 0.98
    if name == "cracks-semantic":  # native resolution, no boundary head: nothing is approximated
        assert min(all_ious) > 0.999


def _sigmoid_or_softmax_model(tmp_path: Path, registry: Registry, activation: str) -> None:
    if activation == "sigmoid":
        path = colour_model(tmp_path / "s" / "model.onnx", 0)
        registry.publish(path.parent, manifest("raw", "1"))
        return
    wt = np.zeros((2, 3, 3, 3), np.float32)
    wt[0, :, 1, 1] = (-12, 6, 6)  # background: not red
    wt[1, 0, 1, 1], wt[1, 0, 1, 2] = 9.0, 3.0  # red, with its right neighbour
    path = conv_stack(tmp_path / "x" / "model.onnx", [wt], [np.array([0.5, -4.0])])
    registry.publish(path.parent, manifest("raw", "1", classes=["background", "red"], background_class="background",
                                           output_activation="softmax", defaults={"threshold": 0.6}))


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_raw_scores_are_thresholded_with_the_same_proposals(registry: Registry, tmp_path: Path, activation: str) -> None:
    _sigmoid_or_softmax_model(tmp_path, registry, activation)
    engine = Engine(registry, device="cpu")
    pipe = engine.pipeline("raw")
    img = scene()
    img[50:52, 10:60] = (200, 40, 40)  # a thin stroke: edge pixels near the threshold
    net = semantic_network_maps(img, pipe._run, input_size=None, mean=(0, 0, 0), std=(1, 1, 1),
                                activation=pipe.manifest.output_activation, keep_logits=True)
    assert net.probs is None and net.logits is not None and net.activation == activation
    flipped = semantic_network_maps(img, pipe._run, input_size=None, mean=(0, 0, 0), std=(1, 1, 1),
                                    activation=pipe.manifest.output_activation, flip=True, keep_logits=True)
    assert flipped.probs is not None  # two passes are averaged as probabilities
    # scores near 1 may order differently by a rounding: compare by place
    ref = sorted(engine.propose(img, model="raw", params={"full_resolution": True}), key=lambda p: p.mask.bbox)
    new = sorted(engine.propose(img, model="raw"), key=lambda p: p.mask.bbox)
    assert len(ref) >= 2 and [p.mask for p in new] == [p.mask for p in ref]
    assert np.allclose([p.score for p in new], [p.score for p in ref], atol=1e-5)


def test_network_maps_given_as_probabilities_or_logits_agree(registry: Registry, tmp_path: Path) -> None:
    from inference.pipelines.postprocess import network_maps_to_proposals

    _sigmoid_or_softmax_model(tmp_path, registry, "softmax")
    pipe = Engine(registry, device="cpu").pipeline("raw")
    img = scene()
    raw = pipe._run(img.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)[0][0]
    e = np.exp(raw - raw.max(0))
    probs = NetworkMaps((e / e.sum(0)).astype(np.float32))
    logits = NetworkMaps(None, logits=raw, activation="softmax")
    kw = dict(threshold=0.6, background="background", min_area=4)
    a = network_maps_to_proposals(probs, img.shape[:2], pipe.manifest.classes, pipe.info, **kw)
    b = network_maps_to_proposals(logits, img.shape[:2], pipe.manifest.classes, pipe.info, **kw)
    assert a and sorted(p.mask.bbox for p in a) == sorted(p.mask.bbox for p in b)
    assert sorted(p.mask.area for p in a) == sorted(p.mask.area for p in b)
