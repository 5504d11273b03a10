"""What a project teaches: accepted masks, weak clicks and rejections, split by image.

Sources of labels (DESIGN.md, 003):

- accepted instances (drawn, accepted or modified-then-accepted proposals) are full
  masks; a modified proposal is stored as its corrected mask, so it is simply an
  accepted instance here;
- ``weak_click`` interactions (details ``x``, ``y``, ``positive``, ``class_name``)
  are point labels: "this patch holds / does not hold class X";
- rejected proposals are negatives: their pixels are not that class (background
  unless an accepted mask says otherwise) and their centre is a negative click; except
  a "no" of the clustered yes/no review, which says the mask is not good enough, not
  where the class is (``_quality_rejections``).

An image takes part in pixel-wise (semantic) training when it is marked done (then
everything unlabelled is background) or holds labels: then only the labelled pixels
supervise (``ImageLabels.training_map``: accepted instances, rejected proposals as
background, every other pixel left out of the loss). Instance training takes images
with accepted instances.
The train/validation split is by image and fixed by a seed (``split_by_image``):
the decision for an image depends only on the seed and the image's path, so adding
images to a project never moves an old image across the split.

Nothing here imports torch.
"""
from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, TypeVar

import numpy as np

from annotation.document import ImageStatus, InstanceState
from annotation.mask import Mask
from annotation.store import ProjectStore

WEAK_CLICK = "weak_click"
WEAK_CLICK_UNDONE = "weak_click_undone"
IGNORE = 255  # training-map value of a pixel nobody labelled (left out of the loss)


@dataclass(frozen=True)
class Click:
    """A point label in image pixels (x right, y down)."""

    x: float
    y: float
    positive: bool
    class_name: str
    source: str = WEAK_CLICK  # weak_click | accepted | rejected


@dataclass
class ImageLabels:
    """Everything the project knows about one image.

    ``instances`` and ``negatives`` are ``(class_name, Mask)`` pairs of the image's
    ``size`` ``(height, width)``.
    """

    image_id: int
    path: Path
    size: tuple[int, int]
    instances: list[tuple[str, Mask]] = field(default_factory=list)
    negatives: list[tuple[str, Mask]] = field(default_factory=list)
    clicks: list[Click] = field(default_factory=list)
    done: bool = False
    rel_path: str = ""  # path relative to the project folder: what the split is keyed on

    @property
    def split_key(self) -> str:
        """Stable across machines and folder moves: the project-relative path when known."""
        return self.rel_path or str(self.path)

    @property
    def key(self) -> str:
        """The last three path parts (``set/image/name.jpg``): readable and unique enough for logs."""
        return "/".join(self.path.parts[-3:])

    @property
    def fully_labelled(self) -> bool:
        """Usable for pixel-wise training: marked done (every unlabelled pixel is background),
        or holding labels whose pixels supervise alone (``training_map``)."""
        return bool(self.instances) or bool(self.negatives) or self.done

    def class_map(self, classes: Sequence[str]) -> np.ndarray:
        """``(H, W)`` uint8 map: 0 background, ``i + 1`` for ``classes[i]``.

        Later classes are painted over earlier ones (palette drawing order puts
        nested classes such as glass-in-mirror last). Every unlabelled pixel is background:
        the truth of a done image (validation and test scores read it so).
        """
        return self._paint(np.zeros(self.size, np.uint8), classes)

    def training_map(self, classes: Sequence[str]) -> np.ndarray:
        """The training target: ``class_map`` on an image marked done; on any other image only
        what the expert said: accepted instances (their class), rejected proposals
        (background) and ``IGNORE`` everywhere else, so that a glass pane nobody labelled
        yet is not taught as background."""
        if self.done:
            return self.class_map(classes)
        out = np.full(self.size, IGNORE, np.uint8)
        for _name, mask in self.negatives:
            self._put(out, mask, 0)
        return self._paint(out, classes)

    def _put(self, out: np.ndarray, mask: Mask, value: int) -> None:
        x0, y0, x1, y1 = mask.box
        cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(self.size[1], x1), min(self.size[0], y1)
        if cx1 <= cx0 or cy1 <= cy0:
            return
        crop = mask.array[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        out[cy0:cy1, cx0:cx1][crop] = value

    def _paint(self, out: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        index = {c: i + 1 for i, c in enumerate(classes)}
        for cls in classes:
            for name, mask in self.instances:
                if name == cls:
                    self._put(out, mask, index[cls])
        return out


@dataclass
class ProjectData:
    """The labelled images of one project and the classes to learn."""

    project: Path
    classes: list[str]
    images: list[ImageLabels]

    def summary(self, images: Optional[Sequence[ImageLabels]] = None) -> dict:
        """JSON-ready counts for the manifest: images, instances and clicks per class."""
        images = self.images if images is None else images
        inst = Counter(name for im in images for name, _ in im.instances)
        neg = Counter(name for im in images for name, _ in im.negatives)
        pos_clicks = Counter(c.class_name for im in images for c in im.clicks if c.positive)
        neg_clicks = Counter(c.class_name for im in images for c in im.clicks if not c.positive)
        return {
            "project": str(self.project),
            "images": len(images),
            "instances": dict(inst),
            "rejected": dict(neg),
            "clicks_positive": dict(pos_clicks),
            "clicks_negative": dict(neg_clicks),
            "date": time.strftime("%Y-%m-%d"),
        }


def _interior_point(mask: Mask) -> tuple[float, float]:
    """A pixel inside the mask near its centroid (the centroid of a C shape lies outside)."""
    m = mask.cropped()
    ys, xs = np.nonzero(m.array)
    cy, cx = ys.mean(), xs.mean()
    i = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return float(m.x0 + xs[i]), float(m.y0 + ys[i])


def _quality_rejections(st: ProjectStore) -> set[int]:
    """Instances whose last rejection was a "no" of the clustered yes/no review (log detail
    ``review`` = ``annotation.clusters.QUALITY_REVIEW``). That question asks whether a mask
    is good as it is (004: IoU above 0.8); a no with no correction after it says nothing
    about which pixels are background, and a mask at IoU 0.7 is mostly right: taught as
    background it would unteach the class there. A rejection in the editor (R) stays a
    negative."""
    from annotation.clusters import QUALITY_REVIEW

    last: dict[int, bool] = {}
    for row in st.interactions(actions=["reject"]):  # in log order: the last one wins
        if row.instance_id is not None:
            last[int(row.instance_id)] = row.details.get("review") == QUALITY_REVIEW
    return {iid for iid, quality in last.items() if quality}


def load_project(
    store: ProjectStore | str | Path,
    classes: Optional[Sequence[str]] = None,
) -> ProjectData:
    """Read labels from a project (a ``ProjectStore`` or its folder).

    ``classes`` defaults to the project palette's classes in drawing order.
    Images that carry no label of any kind are left out.
    """
    own = not isinstance(store, ProjectStore)
    st = ProjectStore.open(store, create=False, scan=False) if own else store
    try:
        palette = st.palette
        if classes is None:
            # drawing order, so that nested classes are painted last in ``class_map``
            classes = [c.name for c in sorted(palette.classes, key=lambda c: c.order)]
        classes = list(classes)
        by_id: dict[int, ImageLabels] = {}
        for rec in st.images():
            if rec.error:
                continue
            by_id[rec.id] = ImageLabels(
                image_id=rec.id, path=st.image_file(rec), size=rec.size, done=rec.status == ImageStatus.DONE,
                rel_path=rec.path,
            )
        quality_noes = _quality_rejections(st)
        for inst in st.instances(states=[InstanceState.ACCEPTED, InstanceState.REJECTED]):
            im = by_id.get(inst.image_id)
            if im is None or inst.mask.is_empty():
                continue
            if inst.state == InstanceState.ACCEPTED:
                im.instances.append((inst.class_name, inst.mask))
            elif inst.id in quality_noes:
                continue  # "not good enough" from the yes/no review: its pixels are unknown, not background
            else:
                im.negatives.append((inst.class_name, inst.mask))
                x, y = _interior_point(inst.mask)
                im.clicks.append(Click(x, y, False, inst.class_name, "rejected"))
        rows = st.interactions(actions=[WEAK_CLICK, WEAK_CLICK_UNDONE])
        # the desktop undoes a click by logging weak_click_undone {log_id}; the log keeps both
        undone = {r.details.get("log_id") for r in rows if r.action == WEAK_CLICK_UNDONE}
        for it in rows:
            if it.action != WEAK_CLICK or it.id in undone:
                continue
            im = by_id.get(it.image_id) if it.image_id is not None else None
            d = it.details
            name = d.get("class_name") or it.class_name
            if im is None or name is None or "x" not in d or "y" not in d:
                continue
            im.clicks.append(Click(float(d["x"]), float(d["y"]), bool(d.get("positive", True)), str(name)))
        images = [
            im for im in by_id.values() if im.instances or im.negatives or im.clicks or im.done
        ]
        return ProjectData(project=st.root, classes=classes, images=sorted(images, key=lambda i: str(i.path)))
    finally:
        if own:
            st.close()


# A weak click labels the patch around it (003: "localize patches that contain defects";
# a negative click "indicates the absence of defects within a given image patch"). The
# desktop stores only the point, so the patch side is a rule shared by the CAM trainer
# (its crop) and ``expert_clicks`` (what counts as one patch): about a quarter of the
# image's shorter side, between 64 and 320 px (003's crop, on 5K photos). A 320 px crop
# on a 480 x 320 CrackForest photo is the whole photo: every "clean" crop held the crack.
PATCH_MIN, PATCH_MAX, PATCH_MULTIPLE = 64, 320, 16


def click_patch_size(size: tuple[int, int]) -> int:
    """The side in pixels of the patch a weak click labels on an image of ``size`` ``(h, w)``."""
    side = min(int(size[0]), int(size[1])) / 4.0
    side = int(round(side / PATCH_MULTIPLE)) * PATCH_MULTIPLE
    return int(min(PATCH_MAX, max(PATCH_MIN, side)))


def expert_clicks(
    truth: np.ndarray, class_name: str, patch: Optional[int] = None, *, min_pixels: int = 8,
    clean_margin: Optional[int] = None,
) -> list[Click]:
    """The weak clicks an expert would place on an image whose truth mask is known.

    The image is read in a grid of ``patch`` x ``patch`` cells (``click_patch_size`` by
    default). In every cell, each connected piece of the class holding at least
    ``min_pixels`` pixels gets one positive click, on its pixel nearest the piece's
    centroid (a person clicks on the crack, not beside it). Every cell that has room for
    a clean patch gets one negative click, at its point farthest from the class (within
    the cell), provided the square of side ``patch + 2 * clean_margin`` around it holds
    none of the class (``clean_margin`` default ``patch // 8``, the trainer's jitter of
    negative crops): what a person marks as clean is clean all around.

    ``truth``: ``(H, W)`` bool. Returns clicks with ``source`` ``"derived"``, cells in
    row-major order (positives of a cell before its negative).
    """
    import cv2

    truth = np.asarray(truth, bool)
    h, w = truth.shape
    patch = int(patch or click_patch_size((h, w)))
    margin = patch // 8 if clean_margin is None else int(clean_margin)
    need = patch // 2 + margin  # Chebyshev distance from the click to the nearest class pixel
    if truth.any():
        # distance of every pixel to the nearest class pixel, in the max-norm: a square of
        # half-side d around a point is clean exactly when this distance exceeds d
        dist = cv2.distanceTransform((~truth).astype(np.uint8), cv2.DIST_C, 3)
    else:
        dist = np.full((h, w), float(h + w), np.float32)
    out: list[Click] = []
    for y0 in range(0, h, patch):
        for x0 in range(0, w, patch):
            cell = truth[y0 : y0 + patch, x0 : x0 + patch]
            if cell.sum() >= min_pixels:
                n, lab, stats, cents = cv2.connectedComponentsWithStats(cell.astype(np.uint8), connectivity=8)
                for k in range(1, n):
                    if stats[k, cv2.CC_STAT_AREA] < min_pixels:
                        continue
                    ys, xs = np.nonzero(lab == k)
                    i = int(np.argmin((xs - cents[k][0]) ** 2 + (ys - cents[k][1]) ** 2))
                    out.append(Click(float(x0 + xs[i]), float(y0 + ys[i]), True, class_name, "derived"))
            d = dist[y0 : y0 + patch, x0 : x0 + patch]
            # the clean square must fit inside the image as well (crops are reflected at the border,
            # which would mirror a crack from just outside the square into it)
            yy, xx = np.mgrid[y0 : y0 + d.shape[0], x0 : x0 + d.shape[1]]
            fits = (yy >= need) & (xx >= need) & (yy < h - need) & (xx < w - need)
            room = np.where(fits, d, -1.0)
            iy, ix = np.unravel_index(int(np.argmax(room)), room.shape)
            if room[iy, ix] > need:
                out.append(Click(float(x0 + ix), float(y0 + iy), False, class_name, "derived"))
    return out


def log_weak_clicks(store: ProjectStore, image_id: int, clicks: Sequence[Click]) -> list[int]:
    """Store ``clicks`` as the desktop's weak-click tool does (one ``weak_click`` log row
    each, class in its column); returns the rows' ids."""
    with store.transaction():
        return [
            store.log(WEAK_CLICK, image_id=image_id, class_name=c.class_name, x=float(c.x), y=float(c.y),
                      positive=bool(c.positive))
            for c in clicks
        ]


T = TypeVar("T")


def split_score(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by ``seed`` and ``key`` (an image's path)."""
    h = hashlib.sha1(f"{seed}:{key}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def split_by_image(
    items: Sequence[T], val_fraction: float, seed: int = 0,
    key=lambda item: getattr(item, "split_key", None) or str(getattr(item, "path", item)),
) -> tuple[list[T], list[T]]:
    """``(train, val)``: an item goes to validation when its ``split_score`` < ``val_fraction``.

    With at least two items and a positive fraction, at least one goes to each side
    (the lowest-scoring item is moved to validation if none scored below the
    fraction, the highest to training if all did). Items sharing a key (the same
    image) always land on the same side.
    """
    if not items:
        return [], []
    scores = [split_score(key(it), seed) for it in items]
    val_idx = {i for i, s in enumerate(scores) if s < val_fraction}
    if val_fraction > 0 and len({key(it) for it in items}) >= 2:
        if not val_idx:
            low = min(scores)
            val_idx = {i for i, s in enumerate(scores) if s == low}
        if len(val_idx) == len(items):
            high = max(scores)
            val_idx = {i for i, s in enumerate(scores) if s != high}
        # stratify: a class found on at least two images gets at least one of them in
        # validation, so a rare class (MSD's 10 mirrors beside 400 GDD panes) is measured
        classes_of = [
            {c for c, _ in getattr(it, "instances", ())} for it in items
        ]
        for cls in sorted(set().union(*classes_of)):
            holders = [i for i, cs in enumerate(classes_of) if cls in cs]
            if len({key(items[i]) for i in holders}) >= 2 and not val_idx.intersection(holders):
                chosen = key(items[min(holders, key=lambda j: scores[j])])
                val_idx |= {i for i, it in enumerate(items) if key(it) == chosen}
    train = [it for i, it in enumerate(items) if i not in val_idx]
    val = [it for i, it in enumerate(items) if i in val_idx]
    return train, val


def dataset_of(item: object) -> str:
    """The data set an image belongs to: the first part of its project-relative path
    (``glass-gdd/image/1.jpg`` -> ``glass-gdd``), or ``""`` for a file at the top."""
    key = getattr(item, "split_key", None) or str(getattr(item, "path", item))
    parts = Path(key).parts
    return parts[0] if len(parts) > 1 else ""


def split_three(
    items: Sequence[T], val_fraction: float, test_fraction: float, seed: int = 0,
    key=lambda item: getattr(item, "split_key", None) or str(getattr(item, "path", item)),
    group=dataset_of,
) -> tuple[list[T], list[T], list[T]]:
    """``(train, val, test)`` by image, fixed by ``seed``, stratified by ``group`` (data set).

    Within each data set the images are ranked by ``split_score``: the first
    ``round(n * test_fraction)`` are test, the next ``round(n * val_fraction)``
    validation, the rest training; a fraction above zero gets at least one image of a
    data set with three or more. Test images are never trained on nor used to choose a
    checkpoint (they give the published figures); validation only chooses the
    checkpoint. Items sharing a key stay together.
    """
    by_group: dict[str, list[str]] = {}
    for it in items:
        k = key(it)
        g = by_group.setdefault(group(it), [])
        if k not in g:
            g.append(k)
    test_keys: set[str] = set()
    val_keys: set[str] = set()
    for g in sorted(by_group):
        keys = sorted(by_group[g], key=lambda k: (split_score(k, seed), k))
        n = len(keys)
        n_test = int(round(n * test_fraction))
        n_val = int(round(n * val_fraction))
        if n >= 3:
            n_test = max(n_test, 1 if test_fraction > 0 else 0)
            n_val = max(n_val, 1 if val_fraction > 0 else 0)
        n_test = min(n_test, max(0, n - 1))
        n_val = min(n_val, max(0, n - 1 - n_test))
        test_keys.update(keys[:n_test])
        val_keys.update(keys[n_test:n_test + n_val])
    train = [it for it in items if key(it) not in test_keys and key(it) not in val_keys]
    val = [it for it in items if key(it) in val_keys]
    test = [it for it in items if key(it) in test_keys]
    return train, val, test


def read_rgb(path: str | Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB with EXIF orientation applied."""
    try:
        from annotation.images import load_image  # the project's loader, when present

        return np.ascontiguousarray(load_image(path).rgb)
    except ImportError:
        from PIL import Image, ImageOps

        with Image.open(path) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))

