"""Click and box prompts: a SAM-interface ONNX encoder/decoder pair, or GrabCut when none is registered.

Coordinates: points are ``(N, 2)`` float ``(x, y)`` in original image pixels; ``labels``
``(N,)`` are 1 (object) or 0 (background); a box is ``(x0, y0, x1, y1)`` in image pixels.

The SAM interface is segment-anything's ONNX export:

- encoder ``encoder.onnx``: input ``image`` ``(1, 3, S, S)`` float32 (RGB normalised with
  the manifest's mean/std after resizing the longest side to ``S`` (1024) and padding
  bottom/right with zeros); output ``image_embeddings``.
- decoder ``decoder.onnx``: inputs ``image_embeddings``, ``point_coords`` ``(1, N, 2)`` in
  the resized frame, ``point_labels`` ``(1, N)`` (box corners labelled 2 and 3, a padding
  point labelled -1 when there is no box), ``mask_input`` ``(1, 1, 256, 256)``,
  ``has_mask_input`` ``(1,)``, ``orig_im_size`` ``(2,)`` = (H, W); outputs ``masks``
  ``(1, K, H, W)`` logits and ``iou_predictions`` ``(1, K)`` (and, in segment-anything's
  export, ``low_res_masks`` ``(1, K, 256, 256)``).

A second click refines instead of starting over: when a call extends the last call's
points, the last answer's low-resolution logits go back in as ``mask_input`` with
``has_mask_input`` = 1 (the decoder's ``low_res_masks`` when it has that output, else the
answer's logits resampled to that frame); a mask to refine (``previous``, a selected
instance) enters the same way, as logits of +-``MASK_LOGIT``.

Embeddings are computed once per image, kept in memory and on disk under
``user_data_dir()/cache/embeddings/<image sha1>-<model>-<version>.npy``.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Optional, Sequence

import cv2
import numpy as np

from annotation.mask import Mask
from inference.pipelines.base import Runtimes, check_image
from inference.registry import ModelError, ModelInfo

DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size")
LOW_RES = 256  # side of SAM's mask_input / low_res_masks frame (a quarter of the 1024 encoder frame)
MASK_LOGIT = 10.0  # |logit| a given mask becomes in mask_input (SAM's own low-res logits are of this order)


def pixels_key(rgb: np.ndarray) -> str:
    """SHA-1 of the pixels and shape, for images that did not come from a file."""
    h = hashlib.sha1(str(rgb.shape).encode())
    h.update(np.ascontiguousarray(rgb).data)
    return h.hexdigest()


class ResizeLongestSide:
    """SAM's resize: the longest side becomes ``target``; coordinates follow."""

    def __init__(self, target: int = 1024):
        self.target = int(target)

    def new_size(self, h: int, w: int) -> tuple[int, int]:
        """(new_h, new_w) with the longest side = target (rounded like segment-anything)."""
        scale = self.target / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def apply_coords(self, xy: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """``(N, 2)`` xy in an image of ``size`` = (H, W) -> the resized frame."""
        h, w = size
        nh, nw = self.new_size(h, w)
        out = np.asarray(xy, np.float32).reshape(-1, 2).copy()
        out[:, 0] *= nw / w
        out[:, 1] *= nh / h
        return out


def low_res_frame(size: tuple[int, int]) -> tuple[float, int, int]:
    """SAM's low-resolution frame of an (H, W) image: (scale = low-res pixels per image
    pixel, lh, lw = the image's part of the ``LOW_RES`` x ``LOW_RES`` grid, top-left)."""
    h, w = size
    f = LOW_RES / max(h, w)
    return f, max(1, min(LOW_RES, int(h * f + 0.5))), max(1, min(LOW_RES, int(w * f + 0.5)))


def mask_to_low_res(mask: Mask) -> np.ndarray:
    """A ``Mask`` -> ``(1, 1, 256, 256)`` float32 logits (+MASK_LOGIT inside, -MASK_LOGIT
    outside and in the padding), for SAM's ``mask_input``. Costs follow the mask's box."""
    f, lh, lw = low_res_frame(mask.image_size)
    out = np.full((1, 1, LOW_RES, LOW_RES), -MASK_LOGIT, np.float32)
    if mask.is_empty():
        return out
    x0, y0, x1, y1 = mask.bbox
    u0, v0 = int(np.floor(x0 * f)), int(np.floor(y0 * f))
    u1, v1 = min(lw, max(u0 + 1, int(np.ceil(x1 * f)))), min(lh, max(v0 + 1, int(np.ceil(y1 * f))))
    # sample the mask at the low-res pixels' centres (area average over their footprint)
    part = mask.read_box((x0, y0, x1, y1)).astype(np.float32)
    ex0, ey0 = int(np.floor(u0 / f)), int(np.floor(v0 / f))
    ex1, ey1 = max(x1, int(np.ceil(u1 / f))), max(y1, int(np.ceil(v1 / f)))
    full = np.zeros((ey1 - ey0, ex1 - ex0), np.float32)
    full[y0 - ey0:y1 - ey0, x0 - ex0:x1 - ex0] = part
    small = cv2.resize(full, (u1 - u0, v1 - v0), interpolation=cv2.INTER_AREA)
    out[0, 0, v0:v1, u0:u1] = (small * 2.0 - 1.0) * MASK_LOGIT
    return out


def logits_to_low_res(logits: np.ndarray) -> np.ndarray:
    """``(H, W)`` logits at image resolution -> ``(1, 1, 256, 256)`` in SAM's low-res frame
    (for decoders that do not output ``low_res_masks``)."""
    _, lh, lw = low_res_frame(logits.shape[:2])
    out = np.full((1, 1, LOW_RES, LOW_RES), -MASK_LOGIT, np.float32)
    out[0, 0, :lh, :lw] = cv2.resize(np.asarray(logits, np.float32), (lw, lh), interpolation=cv2.INTER_AREA)
    return out


class PromptSession:
    """The interface every prompt backend offers (numpy in, ``Mask`` out)."""

    supports_points = True
    supports_box = True
    model = ""
    version = ""

    def set_image(self, rgb: np.ndarray, key: Optional[str] = None) -> None:
        """Select the image to prompt on: ``(H, W, 3)`` uint8 RGB; ``key`` is its SHA-1 if known."""
        raise NotImplementedError

    def predict(
        self, points: Optional[np.ndarray] = None, labels: Optional[np.ndarray] = None,
        box: Optional[Sequence[float]] = None, previous: Optional[Mask] = None,
    ) -> Mask:
        """Mask for the prompts on the current image (see module docstring for coordinates).

        ``previous``: a ``Mask`` of this image to refine (a selected instance or proposal),
        or None to start from the prompts alone. Calls get all the prompts so far; a call
        that extends the last one's points may refine the last answer instead of
        starting over (SAM: its low-resolution logits fed back as ``mask_input``).
        """
        raise NotImplementedError

    def precompute(self, image_paths: Iterable[str | Path]) -> list[Future]:
        """Prepare images in the background (the current and next ones); nothing by default."""
        return []

    def close(self) -> None:
        pass


def _prompts(points: Optional[np.ndarray], labels: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    pts = np.zeros((0, 2), np.float32) if points is None else np.asarray(points, np.float32).reshape(-1, 2)
    lab = np.ones(len(pts), np.float32) if labels is None else np.asarray(labels, np.float32).reshape(-1)
    if len(lab) != len(pts):
        raise ValueError(f"{len(pts)} points but {len(lab)} labels")
    return pts, lab


class SamPromptSession(PromptSession):
    """SAM-family prompting with cached image embeddings."""

    def __init__(self, info: ModelInfo, runtimes: Runtimes, cache_dir: Optional[Path] = None, memory_items: int = 4):
        self.info = info
        self.model, self.version = info.name, info.version
        self._enc = runtimes.onnx.session(info.file("encoder.onnx"))
        self._dec = runtimes.onnx.session(info.file("decoder.onnx"))
        enc_in = self._enc.get_inputs()[0]
        if enc_in.name != "image" or len(enc_in.shape) != 4:
            raise ModelError(f"{info.file('encoder.onnx')}: expected input 'image' (1, 3, S, S), got "
                             f"{enc_in.name!r} {enc_in.shape}")
        side = enc_in.shape[2] if isinstance(enc_in.shape[2], int) else 1024
        self.transform = ResizeLongestSide(side)
        dec_names = {i.name for i in self._dec.get_inputs()}
        unknown = dec_names - set(DECODER_INPUTS)
        if unknown or "point_coords" not in dec_names:
            raise ModelError(f"{info.file('decoder.onnx')}: inputs {sorted(dec_names)} are not the SAM decoder's "
                             f"({', '.join(DECODER_INPUTS)})")
        self._dec_inputs = dec_names
        self._dec_outputs = [o.name for o in self._dec.get_outputs()]
        if "masks" not in self._dec_outputs or "iou_predictions" not in self._dec_outputs:
            raise ModelError(f"{info.file('decoder.onnx')}: outputs {self._dec_outputs} lack 'masks' and "
                             "'iou_predictions'")
        # the last call's prompts and answer, in low-res logits, fed back by a call extending them
        self._last: Optional[tuple[np.ndarray, np.ndarray, Optional[tuple[float, ...]], Optional[Mask], np.ndarray]] = None
        self.fed_back = False  # whether the last predict fed a mask back as mask_input (for tests and the log)
        if cache_dir is None:
            from annotation.resources import user_data_dir

            cache_dir = user_data_dir() / "cache" / "embeddings"
        self.cache_dir = Path(cache_dir)
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memory_items = memory_items
        self._lock = threading.Lock()
        self._pool: Optional[ThreadPoolExecutor] = None
        self._embedding: Optional[np.ndarray] = None
        self._size: Optional[tuple[int, int]] = None
        self.encoder_runs = 0  # how many times the encoder actually ran (cache misses)

    # ---------------------------------------------------------------- embeddings
    def _cache_file(self, key: str) -> Path:
        return self.cache_dir / f"{key}-{self.model}-{self.version}.npy"

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 -> ``(1, 3, S, S)`` float32: resize longest side, normalise, pad."""
        h, w = rgb.shape[:2]
        nh, nw = self.transform.new_size(h, w)
        resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
        x = (resized.astype(np.float32) / 255.0 - np.asarray(self.info.manifest.mean, np.float32)) / np.asarray(
            self.info.manifest.std, np.float32
        )
        s = self.transform.target
        out = np.zeros((1, 3, s, s), np.float32)
        out[0, :, :nh, :nw] = x.transpose(2, 0, 1)
        return out

    def embedding(self, rgb: np.ndarray, key: str) -> np.ndarray:
        """The image embedding for ``key``: memory, then disk, then the encoder (saved to both)."""
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
        path = self._cache_file(key)
        emb: Optional[np.ndarray] = None
        if path.is_file():
            try:
                emb = np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                emb = None  # a damaged cache file is recomputed
        if emb is None:
            emb = np.asarray(self._enc.run(["image_embeddings"], {"image": self.preprocess(rgb)})[0], np.float32)
            self.encoder_runs += 1
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".tmp{threading.get_ident()}.npy")
                np.save(tmp, emb, allow_pickle=False)
                tmp.replace(path)
            except OSError:
                pass  # a read-only or full disk costs speed, not correctness
        with self._lock:
            self._memory[key] = emb
            while len(self._memory) > self._memory_items:
                self._memory.popitem(last=False)
        return emb

    def set_image(self, rgb: np.ndarray, key: Optional[str] = None) -> None:
        rgb = check_image(rgb)
        self._embedding = self.embedding(rgb, key or pixels_key(rgb))
        self._size = rgb.shape[:2]
        self._last = None

    def precompute(self, image_paths: Iterable[str | Path]) -> list[Future]:
        """Embed images in a background thread (one worker); returns their futures."""
        from annotation.images import image_sha1, load_image

        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="specula-embed")

        def job(p: Path) -> str:
            key = image_sha1(p)
            if key not in self._memory and not self._cache_file(key).is_file():
                self.embedding(load_image(p).rgb, key)
            return key

        return [self._pool.submit(job, Path(p)) for p in image_paths]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # ---------------------------------------------------------------- prompts
    def _mask_input(self, pts: np.ndarray, lab: np.ndarray, box: Optional[tuple[float, ...]],
                    previous: Optional[Mask]) -> Optional[np.ndarray]:
        """What goes in as ``mask_input``: the last answer's logits when these prompts extend
        the last call's (same box, same mask refined), else ``previous`` as logits, else None."""
        if self._last is not None:
            lp, ll, lb, lprev, low = self._last
            n = len(lp)
            if (lb == box and lprev is previous and len(pts) > n and np.array_equal(pts[:n], lp)
                    and np.array_equal(lab[:n], ll)):
                return low
        if previous is not None and not previous.is_empty():
            if previous.image_size != tuple(self._size or ()):
                raise ValueError(f"the mask to refine is of a {previous.image_size} image, not {self._size}")
            return mask_to_low_res(previous)
        return None

    def predict(
        self, points: Optional[np.ndarray] = None, labels: Optional[np.ndarray] = None,
        box: Optional[Sequence[float]] = None, previous: Optional[Mask] = None,
    ) -> Mask:
        if self._embedding is None or self._size is None:
            raise RuntimeError("call set_image before predict")
        user_pts, user_lab = _prompts(points, labels)
        bx = None if box is None else tuple(float(v) for v in box)
        mask_input = self._mask_input(user_pts, user_lab, bx, previous)
        if len(user_pts) == 0 and box is None and mask_input is None:
            raise ValueError("give at least one point or a box")
        pts, lab = user_pts, user_lab
        if box is not None:
            b = np.asarray(box, np.float32).reshape(2, 2)
            pts = np.concatenate([pts, b])
            lab = np.concatenate([lab, np.array([2, 3], np.float32)])
        else:  # segment-anything pads point-only prompts with one (0, 0) point labelled -1
            pts = np.concatenate([pts, np.zeros((1, 2), np.float32)])
            lab = np.concatenate([lab, np.array([-1], np.float32)])
        coords = self.transform.apply_coords(pts, self._size)
        feeds = {
            "image_embeddings": self._embedding,
            "point_coords": coords[None].astype(np.float32),
            "point_labels": lab[None].astype(np.float32),
            "mask_input": np.zeros((1, 1, LOW_RES, LOW_RES), np.float32) if mask_input is None else mask_input,
            "has_mask_input": np.full(1, 0.0 if mask_input is None else 1.0, np.float32),
            "orig_im_size": np.asarray(self._size, np.float32),
        }
        wanted = ["masks", "iou_predictions"] + (["low_res_masks"] if "low_res_masks" in self._dec_outputs else [])
        out = self._dec.run(wanted, {k: v for k, v in feeds.items() if k in self._dec_inputs})
        masks, iou = np.asarray(out[0]), np.asarray(out[1])
        best = int(np.argmax(iou.reshape(-1))) if masks.shape[1] > 1 else 0
        logits = masks[0, best]
        if logits.shape != tuple(self._size):
            logits = cv2.resize(logits, (self._size[1], self._size[0]), interpolation=cv2.INTER_LINEAR)
        if len(out) > 2 and np.asarray(out[2]).shape[-2:] == (LOW_RES, LOW_RES):
            low = np.asarray(out[2], np.float32)[:, best:best + 1].reshape(1, 1, LOW_RES, LOW_RES)
        else:
            low = logits_to_low_res(logits)
        self._last = (user_pts, user_lab, bx, previous, low)
        self.fed_back = mask_input is not None
        return Mask.from_full(logits > 0.0)


class GrabCutPromptSession(PromptSession):
    """Works with no model at all: OpenCV GrabCut in the box, or in a box around the clicks.

    Positive clicks are sure foreground, negative ones sure background (disks of
    ``click_radius`` pixels); only a margin around the box is processed, so large
    images stay fast.
    """

    model = "grabcut"
    version = "opencv"

    def __init__(self, iterations: int = 5, click_radius: int = 4, margin: int = 16):
        self.iterations = iterations
        self.click_radius = click_radius
        self.margin = margin
        self._rgb: Optional[np.ndarray] = None

    def set_image(self, rgb: np.ndarray, key: Optional[str] = None) -> None:
        self._rgb = check_image(rgb)

    def predict(
        self, points: Optional[np.ndarray] = None, labels: Optional[np.ndarray] = None,
        box: Optional[Sequence[float]] = None, previous: Optional[Mask] = None,
    ) -> Mask:
        if self._rgb is None:
            raise RuntimeError("call set_image before predict")
        h, w = self._rgb.shape[:2]
        pts, lab = _prompts(points, labels)
        if previous is not None and not previous.is_empty():
            # start from the mask: probable foreground inside it, probable background in a
            # margin around it, the clicks sure (the benchmark's GrabCut baseline does the same)
            from inference.pipelines.clicks import GrabCutClickSession

            refine = GrabCutClickSession(self.iterations, self.click_radius, self.margin)
            refine.set_image(self._rgb)
            return refine.predict(pts[lab == 1], pts[lab == 0], previous_mask=previous)
        pos = pts[lab == 1]
        if box is None:
            if len(pos) == 0:
                raise ValueError("give a box or at least one positive click")
            spread = max(32.0, 0.1 * max(h, w))
            x0, y0 = pos.min(0) - spread
            x1, y1 = pos.max(0) + spread
        else:
            x0, y0, x1, y1 = (float(v) for v in box)
        bx0, by0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        bx1, by1 = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
        if bx1 - bx0 < 2 or by1 - by0 < 2:
            raise ValueError(f"the box {(x0, y0, x1, y1)} is too small or outside the image")
        # work on the box plus a margin of context, which GrabCut learns the background from
        cx0, cy0 = max(0, bx0 - self.margin), max(0, by0 - self.margin)
        cx1, cy1 = min(w, bx1 + self.margin), min(h, by1 + self.margin)
        crop = np.ascontiguousarray(self._rgb[cy0:cy1, cx0:cx1][:, :, ::-1])  # OpenCV wants BGR
        gc = np.full(crop.shape[:2], cv2.GC_BGD, np.uint8)
        gc[by0 - cy0 : by1 - cy0, bx0 - cx0 : bx1 - cx0] = cv2.GC_PR_FGD
        for (x, y), l in zip(pts, lab):
            if l in (0, 1):
                cv2.circle(gc, (int(round(x - cx0)), int(round(y - cy0))), self.click_radius,
                           int(cv2.GC_FGD if l == 1 else cv2.GC_BGD), -1)
        if not (gc == cv2.GC_BGD).any():  # GrabCut needs background samples
            gc[0, :] = cv2.GC_BGD
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(crop, gc, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            pass  # degenerate colour statistics: keep the initial labelling
        fg = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
        return Mask.from_box_array(cx0, cy0, fg, (h, w)).cropped()
