"""The semantic pipeline's sizes and post-processing on real images at the sizes users run.

- one resize rule (area-averaging when shrinking, bilinear when enlarging), on a real
  1280 x 1024 GDD photo;
- a model without a fixed input size sees DeepCrack (544 x 384) and CrackForest
  (480 x 320) photos, and odd sizes, padded to a multiple of 32, and its maps come back
  at the photo's size;
- horizontal-flip test-time augmentation mirrors the second pass back;
- a boundary map cuts a merged glass map into its panes (GDD truth).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.engine import Engine
from inference.pipelines.base import maps_to_proposals, pad_to_multiple, resize_image, split_regions
from inference.registry import ModelInfo, Registry
from inference_testmodels import conv_stack, manifest

REPO = Path(__file__).resolve().parents[2]


def data_set(name: str) -> Path:
    root = Path(os.environ.get("SPECULA_DATA", REPO.parent / "shared" / "data")) / name
    if not (root / "image").is_dir():
        pytest.skip(f"data set {name} is missing at {root} (set SPECULA_DATA to the shared data folder)")
    return root


def read(path: Path) -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1])


def first(name: str, stem: str = "") -> tuple[np.ndarray, np.ndarray]:
    root = data_set(name)
    img = sorted((root / "image").glob(f"{stem}*.jpg"))[0]
    mask = cv2.imread(str(root / "mask" / f"{img.stem}.png"), cv2.IMREAD_GRAYSCALE) > 127
    return read(img), mask


def test_resize_shrinks_by_area_and_enlarges_bilinear_on_a_gdd_photo() -> None:
    rgb, _ = first("glass-gdd")
    assert rgb.shape[:2] in ((1024, 1280), (1280, 1024))
    small = resize_image(rgb, (384, 384))
    assert np.array_equal(small, cv2.resize(rgb, (384, 384), interpolation=cv2.INTER_AREA))
    big = resize_image(small, (1024, 1280))
    assert np.array_equal(big, cv2.resize(small, (1280, 1024), interpolation=cv2.INTER_LINEAR))
    # the point of area-averaging: 1-px dark lines every 3 rows survive a 4x shrink in every row (bilinear
    # reads two rows in four and misses the lines in some output rows altogether)
    lines = rgb.copy()
    lines[100:1000:3, :, :] = 0
    area = resize_image(lines, (lines.shape[0] // 4, lines.shape[1] // 4)).astype(np.int32)
    linear = cv2.resize(lines, (lines.shape[1] // 4, lines.shape[0] // 4), interpolation=cv2.INTER_LINEAR)
    base = resize_image(rgb, area.shape[:2]).astype(np.int32)
    rows = slice(30, 240)
    # every output row between the lines' first and last holds some of a line (darker)
    assert (base[rows] - area[rows]).mean(axis=(1, 2)).min() > 3
    assert (base[rows] - linear[rows].astype(np.int32)).mean(axis=(1, 2)).min() < 1
    # one axis shrinking and the other growing: each axis by its own rule
    mixed = resize_image(rgb, (rgb.shape[0] // 2, rgb.shape[1] * 2))
    step = cv2.resize(rgb, (rgb.shape[1], rgb.shape[0] // 2), interpolation=cv2.INTER_AREA)
    assert np.array_equal(mixed, cv2.resize(step, (rgb.shape[1] * 2, rgb.shape[0] // 2), interpolation=cv2.INTER_LINEAR))


def _dynamic_model(tmp_path: Path, registry: Registry, **defaults: object) -> None:
    """Crack-like: logit = dark pixels, with a horizontally asymmetric 3 x 3 kernel
    (so a flip that is not mirrored back shows)."""
    wt = np.zeros((2, 3, 3, 3), np.float32)
    wt[1, :, 1, 2] = -8.0  # the right neighbour's darkness
    wt[1, :, 1, 1] = -4.0
    path = conv_stack(tmp_path / "w" / "model.onnx", [wt], [np.array([0.0, 5.0])])
    registry.publish(path.parent, manifest("native", "1", classes=["background", "crack"], background_class="background",
                                           output_activation="softmax", input_size=None,
                                           defaults={"pad_multiple": 32, **defaults}))


@pytest.mark.parametrize("set_name,size", [("cracks-deepcrack", (384, 544)), ("cracks-cfd", (320, 480)),
                                           ("cracks-deepcrack", (301, 517))])
def test_native_size_model_sees_the_photo_padded_to_32(registry: Registry, tmp_path: Path, set_name: str,
                                                       size: tuple[int, int]) -> None:
    rgb, _ = first(set_name)
    rgb = np.ascontiguousarray(rgb[: size[0], : size[1]])
    assert rgb.shape[:2] == size
    _dynamic_model(tmp_path, registry)
    engine = Engine(registry, device="cpu")
    pipe = engine.pipeline("native", "1")
    seen: list[tuple[int, ...]] = []
    run = pipe._run

    def spy(x: np.ndarray) -> list[np.ndarray]:
        seen.append(x.shape)
        return run(x)

    pipe._run = spy  # type: ignore[method-assign]
    maps = pipe.probability_maps(rgb)
    assert maps.shape == (2,) + size
    ((_, _, h, w),) = seen
    assert h % 32 == 0 and w % 32 == 0 and h - size[0] < 32 and w - size[1] < 32
    # no resize happened: the padded pass, cropped, is the map (a 1-px crack stays 1 px)
    x = pad_to_multiple(rgb, 32).astype(np.float32).transpose(2, 0, 1)[None] / 255.0
    raw = run(x)[0][0, :, : size[0], : size[1]]
    e = np.exp(raw - raw.max(0))
    assert np.allclose(maps, e / e.sum(0), atol=1e-5)
    engine.close()


def test_flip_tta_mirrors_the_second_pass_back(registry: Registry, tmp_path: Path) -> None:
    rgb, _ = first("cracks-deepcrack")
    _dynamic_model(tmp_path, registry, flip_tta=True)
    engine = Engine(registry, device="cpu")
    pipe = engine.pipeline("native", "1")
    with_flip = pipe.probability_maps(rgb)
    without = pipe.probability_maps(rgb, params={"flip_tta": False})
    mirrored = pipe.probability_maps(np.ascontiguousarray(rgb[:, ::-1]), params={"flip_tta": False})[:, :, ::-1]
    assert np.allclose(with_flip, (without + mirrored) / 2, atol=1e-5)
    assert not np.allclose(without, mirrored, atol=1e-3)  # the kernel really is asymmetric
    engine.close()


def _panes() -> tuple[np.ndarray, list[np.ndarray]]:
    """A GDD truth with at least two glass components, and its components."""
    root = data_set("glass-gdd")
    for m in sorted((root / "mask").glob("*.png")):
        truth = cv2.imread(str(m), cv2.IMREAD_GRAYSCALE) > 127
        n, lab, stats, _ = cv2.connectedComponentsWithStats(truth.astype(np.uint8), connectivity=8)
        big = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] > 5000]
        if len(big) < 2:
            continue
        # panes that a 15-px dilation merges: what a blurry prediction proposes as one
        merged = cv2.dilate(truth.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
        nm, _ = cv2.connectedComponents(merged.astype(np.uint8), connectivity=8)
        if nm - 1 < len(big):
            return truth, [lab == i for i in big]
    pytest.skip("no GDD truth with neighbouring panes found")


def test_boundary_map_splits_merged_panes_into_their_own_proposals() -> None:
    truth, panes = _panes()
    merged = cv2.dilate(truth.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    # the boundary head's target: a band around each truth component's boundary
    k = np.ones((13, 13), np.uint8)
    band = np.zeros(truth.shape, bool)
    for p in panes:
        pu = p.astype(np.uint8)
        band |= (cv2.dilate(pu, k) > 0) & ~(cv2.erode(pu, k) > 0)
    info = ModelInfo(manifest=__import__("inference.registry", fromlist=["Manifest"]).Manifest.from_json(
        manifest("glass", "1", classes=["glass"])), path=Path("."))
    plain = maps_to_proposals(merged[None].astype(np.float32), ("glass",), info, threshold=0.5, min_area=64)
    split = maps_to_proposals(merged[None].astype(np.float32), ("glass",), info, threshold=0.5, min_area=64,
                              boundary=band.astype(np.float32), min_seed_area=400)

    def own(props) -> int:
        return sum(any(p.mask.iou(_as_mask(t)) >= 0.5 for p in props) for t in panes)

    assert own(split) == len(panes) > own(plain)
    # the pieces grow back over the band: together they are the merged map again
    union = np.zeros(truth.shape, bool)
    for p in split:
        union |= p.mask.to_full()
    assert (union == merged).mean() > 0.999


def _as_mask(full: np.ndarray):
    from annotation.mask import Mask

    return Mask.from_full(full)


def test_split_regions_keeps_a_component_without_two_seeds_whole() -> None:
    mask = np.zeros((200, 300), bool)
    mask[20:180, 20:120] = True   # one pane
    mask[20:180, 180:280] = True  # a second, separate pane
    cut = np.zeros_like(mask)
    cut[95:105, :] = True          # a band across both
    labels = split_regions(mask, cut, min_seed_area=100)
    assert labels is not None
    assert len(np.unique(labels[20:180, 20:120])) == 2 and len(np.unique(labels[20:180, 180:280])) == 2
    assert set(np.unique(labels[20:180, 20:120])).isdisjoint(np.unique(labels[20:180, 180:280]))
    assert np.array_equal(labels > 0, mask)
    assert split_regions(mask, np.zeros_like(mask), 100) is None  # one seed per component: nothing to split


def test_split_regions_work_in_the_masks_box_and_give_the_same_panes_anywhere() -> None:
    """The split is done in the mask's bounding box: the same mask placed in a corner of a
    larger map gets the same panes, seeds and count, only shifted."""
    from inference.pipelines.base import split_regions_with_seeds

    mask = np.zeros((120, 160), bool)
    mask[10:110, 10:70] = True
    mask[10:110, 90:150] = True
    mask[55:65, 60:100] = True   # a bridge: one 8-connected component with two panes
    cut = np.zeros_like(mask)
    cut[50:70, :] = True
    tight = split_regions_with_seeds(mask, cut, 200)
    big_mask = np.zeros((400, 500), bool)
    big_cut = np.zeros_like(big_mask)
    big_mask[250:370, 300:460] = mask
    big_cut[250:370, 300:460] = cut
    placed = split_regions_with_seeds(big_mask, big_cut, 200)
    assert tight is not None and placed is not None
    assert placed[2] == tight[2] >= 2
    for small, big in zip(tight[:2], placed[:2]):
        assert big.shape == (400, 500) and big.dtype == np.int32
        assert np.array_equal(big[250:370, 300:460], small)
        assert not big[:250].any() and not big[:, :300].any()
    assert split_regions_with_seeds(np.zeros((50, 50), bool), np.zeros((50, 50), bool), 10) is None


@pytest.mark.parametrize("n_labels", [1, 3, 9, 14])
def test_label_boxes_of_few_and_many_labels_are_each_labels_box(n_labels: int) -> None:
    from inference.pipelines.postprocess import _label_boxes

    rng = np.random.default_rng(n_labels)
    labels = np.zeros((90, 130), np.int32)
    for k in range(1, n_labels):
        y, x = rng.integers(0, 80), rng.integers(0, 120)
        labels[y : y + rng.integers(1, 10), x : x + rng.integers(1, 10)] = k
    boxes = _label_boxes(labels, n_labels)
    assert boxes.shape == (n_labels, 4)
    for k in range(1, n_labels):
        ys, xs = np.nonzero(labels == k)
        want = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) if len(ys) else (0, 0, 0, 0)
        assert tuple(boxes[k]) == want
