"""Generate the sample projects' images (our own synthetic scenes, freely redistributable).

    python scripts/make_sample_images.py

writes assets/sample_project/*.jpg (rooms with windows and mirrors) and
assets/sample_inspection/*.jpg (concrete with cracks and rust). Deterministic.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1] / "assets"


def _room(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = np.zeros((h, w, 3), np.float32)
    wall = np.array(rng.uniform([150, 160, 170], [220, 225, 230]), np.float32)
    yy = np.linspace(0.85, 1.05, h)[:, None, None]
    img[:] = wall * yy
    floor_y = int(h * rng.uniform(0.72, 0.8))
    wood = np.array([60, 95, 140], np.float32)
    for y in range(floor_y, h):
        img[y] = wood * (0.8 + 0.2 * np.sin(np.arange(w) / rng.uniform(5, 12)))[:, None] * (0.9 + 0.2 * (y - floor_y) / (h - floor_y))
    img += rng.normal(0, 4, img.shape)
    return img


def _sky(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    t = np.linspace(0, 1, h)[:, None, None]
    top = np.array([235, 170, 90], np.float32)
    bottom = np.array([250, 225, 190], np.float32)
    sky = top * (1 - t) + bottom * t + np.zeros((h, w, 3), np.float32)
    for _ in range(6):  # clouds
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h * 0.6)))
        cv2.ellipse(sky, c, (int(rng.uniform(20, 80)), int(rng.uniform(8, 25))), 0, 0, 360, (250, 250, 250), -1)
    sky = cv2.GaussianBlur(sky, (0, 0), 6)
    # a distant tree line through the window
    base = int(h * 0.75)
    for x in range(w):
        top_y = base - int(20 + 15 * np.sin(x / 17.0) + 10 * np.sin(x / 5.3))
        sky[top_y:, x] = (40, 90, 50)
    return sky


def _window(img: np.ndarray, rng: np.random.Generator, x0: int, y0: int, x1: int, y1: int, panes: int) -> None:
    h, w = y1 - y0, x1 - x0
    glass = _sky(h, w, rng)
    glass = glass * 0.85 + 0.15 * np.array([200, 210, 200], np.float32)  # a faint reflection on glass
    img[y0:y1, x0:x1] = glass
    frame = (245, 245, 240)
    cv2.rectangle(img, (x0, y0), (x1, y1), frame, 10)
    for i in range(1, panes):
        x = x0 + i * w // panes
        cv2.line(img, (x, y0), (x, y1), frame, 6)
    cv2.line(img, (x0, y0 + h // 2), (x1, y0 + h // 2), frame, 6)


def _mirror(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, oval: bool, behind: list | None = None) -> None:
    # a mirror shows the room mirrored, including windows (glass in mirror) and,
    # given ``behind``, windows on the wall behind the camera
    h, w = img.shape[:2]
    src = img[:, ::-1].copy()
    rng = np.random.default_rng(7)
    for bx0, by0, bx1, by1, panes in behind or []:
        _window(src, rng, bx0, by0, bx1, by1, panes)
    reflection = cv2.GaussianBlur(src, (0, 0), 1.2) * 0.9 + np.array([10, 12, 8], np.float32)
    mask = np.zeros((h, w), np.uint8)
    if oval:
        cv2.ellipse(mask, ((x0 + x1) // 2, (y0 + y1) // 2), ((x1 - x0) // 2, (y1 - y0) // 2), 0, 0, 360, 1, -1)
    else:
        cv2.rectangle(mask, (x0, y0), (x1, y1), 1, -1)
    img[mask.astype(bool)] = reflection[mask.astype(bool)]
    frame = (40, 80, 120)
    if oval:
        cv2.ellipse(img, ((x0 + x1) // 2, (y0 + y1) // 2), ((x1 - x0) // 2, (y1 - y0) // 2), 0, 0, 360, frame, 12)
    else:
        cv2.rectangle(img, (x0, y0), (x1, y1), frame, 12)


def make_rooms() -> None:
    out = ROOT / "sample_project"
    out.mkdir(parents=True, exist_ok=True)
    specs = [
        ("living_room.jpg", [(80, 120, 420, 480, 3)], [(600, 140, 880, 520, False)]),
        ("hallway.jpg", [(560, 90, 940, 430, 2)], [(120, 110, 380, 560, True)]),
        ("bathroom.jpg", [], [(260, 80, 760, 420, False, [(380, 150, 600, 330, 2)])]),
    ]
    for i, (name, windows, mirrors) in enumerate(specs):
        rng = np.random.default_rng(100 + i)
        img = _room(rng, 768, 1024)
        for x0, y0, x1, y1, panes in windows:
            _window(img, rng, x0, y0, x1, y1, panes)
        for x0, y0, x1, y1, oval, *behind in mirrors:
            _mirror(img, x0, y0, x1, y1, oval, behind[0] if behind else None)
        cv2.imwrite(str(out / name), np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 88])


def make_concrete() -> None:
    out = ROOT / "sample_inspection"
    out.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        rng = np.random.default_rng(200 + i)
        h, w = 768, 1024
        base = rng.normal(0, 1, (h // 8, w // 8)).astype(np.float32)
        tex = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC) * 10 + rng.normal(0, 7, (h, w))
        img = np.stack([tex + 150, tex + 152, tex + 150], -1).astype(np.float32)
        # a crack: a jagged random walk, dark and thin
        x, y = rng.uniform(100, 300), rng.uniform(100, 200)
        pts = []
        for _ in range(120):
            x += rng.uniform(2, 8)
            y += rng.normal(2.5, 4)
            pts.append((int(x), int(y)))
        cv2.polylines(img, [np.array(pts, np.int32)], False, (55, 55, 60), int(rng.integers(2, 4)), cv2.LINE_AA)
        # rust staining below a spot
        cx, cy = int(rng.uniform(600, 850)), int(rng.uniform(300, 500))
        stain = np.zeros((h, w), np.float32)
        cv2.ellipse(stain, (cx, cy), (40, 90), 0, 0, 360, 1.0, -1)
        stain = cv2.GaussianBlur(stain, (0, 0), 12)[..., None]
        img = img * (1 - 0.6 * stain) + np.array([30, 70, 140], np.float32) * 0.6 * stain
        cv2.imwrite(str(out / f"pier_{i + 1}.jpg"), np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 88])


if __name__ == "__main__":
    make_rooms()
    make_concrete()
    print("sample images written under", ROOT)
