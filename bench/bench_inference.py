"""Proposal latency of the engine with a small conv ONNX model, and its overhead over a bare session.

    .venv/bin/python bench/bench_inference.py [--repeats N] [--big-side 5000] [--device cpu]

Prints the latency of ``Engine.propose`` on a 1024x1024 image (one tile) and on a
25-megapixel image (tiled, 1024 tiles with 128 overlap), and, on the same 1024x1024
input in the same run, the time of a bare ``InferenceSession.run`` so that the engine's
overhead (normalisation, activation, thresholding, components, proposals) is a ratio.
Needs the ``onnx`` package to build the model (no torch).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.engine import Engine  # noqa: E402
from inference.pipelines.base import normalize  # noqa: E402
from inference.registry import Registry  # noqa: E402


def build_model(path: Path, width: int = 8) -> Path:
    """Three 3x3 convolutions (3 -> width -> width -> 2) with ReLU, logits out; input (1, 3, H, W).

    Weights are set by hand so the output is realistic: class 0 ("crack") fires on dark
    pixels, class 1 ("rust") on red ones, giving tens of components per image, not noise.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    half = width // 2
    w0 = np.zeros((width, 3, 3, 3), np.float32)
    w0[:half, :, 1, 1] = 1.0 / 3.0  # grey level
    w0[half:, 0, 1, 1], w0[half:, 1, 1, 1] = 1.0, -1.0  # red minus green
    w1 = np.zeros((width, width, 3, 3), np.float32)
    w1[np.arange(width), np.arange(width)] = 1.0 / 9.0  # 3x3 mean per channel
    w2 = np.zeros((2, width, 3, 3), np.float32)
    w2[0, :half, 1, 1] = -20.0 / half
    w2[1, half:, 1, 1] = 20.0 / half
    weights = [(w0, np.zeros(width)), (w1, np.zeros(width)), (w2, np.array([6.0, -6.0]))]
    nodes, inits, prev = [], [], "image"
    for i, (w, b) in enumerate(weights):
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        prev = f"c{i}"
        if i < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Identity", [prev], ["scores"]))
    graph = helper.make_graph(
        nodes, "bench", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2, "h", "w"])], inits,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def synthetic_image(h: int, w: int, seed: int = 1) -> np.ndarray:
    """Light concrete-like grey with dark crack lines and red rust blobs, ``(h, w, 3)`` uint8."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(175, 12, (h, w, 1)), 0, 255).astype(np.uint8).repeat(3, axis=2)
    n = max(1, h * w // 50_000)
    for _ in range(n):
        pts = np.cumsum(rng.normal(0, 25, (8, 2)), axis=0) + rng.uniform(0, [w, h])
        cv2.polylines(img, [pts.astype(np.int32)], False, (40, 40, 40), 2)
    for _ in range(n // 2):
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        cv2.circle(img, c, int(rng.uniform(5, 30)), (200, 60, 40), -1)
    return img


def timed(fn, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def shipped_overhead(args: argparse.Namespace) -> None:
    """The same comparison with the shipped default model (a real network, fixed input size).

    The engine resizes the 1024x1024 photo to the model's input, runs it, resizes the
    probabilities back and splits them into proposals; the bare run is the session alone
    on the already-resized input.
    """
    reg = Registry.default()
    names = [n for n in reg.names() if n == args.shipped]
    if not names:
        print(f"(no shipped model {args.shipped}; skipping the real-model comparison)")
        return
    engine = Engine(reg, device=args.device)
    pipe = engine.pipeline(args.shipped)
    sess = pipe._sess  # type: ignore[attr-defined]
    img = synthetic_image(1024, 1024, seed=3)
    h, w = pipe.manifest.input_size
    import cv2

    x = normalize(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA), pipe.manifest)
    feed = {sess.get_inputs()[0].name: x}
    sess.run(None, feed)
    engine.propose(img, model=args.shipped, image_key="warm")
    counter = iter(range(10**9))
    bare, eng = [], []
    for _ in range(args.repeats):
        bare += timed(lambda: sess.run(None, feed), 1)
        eng += timed(lambda: engine.propose(img, model=args.shipped, image_key=f"s{next(counter)}"), 1)
    b, e = statistics.median(bare), statistics.median(eng)
    print(f"{args.shipped}@{pipe.info.version} ({h}x{w} input) on 1024x1024: bare InferenceSession.run "
          f"{b * 1000:.1f} ms, Engine.propose {e * 1000:.1f} ms, overhead {100 * (e - b) / b:.1f} % "
          f"(median of {args.repeats})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--big-side", type=int, default=5000, help="side of the square large image (5000 = 25 MP)")
    ap.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--width", type=int, default=8, help="channels of the hidden conv layers (even)")
    ap.add_argument("--shipped", default="mirror-glass-semantic", help="shipped model for the real-model comparison")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        w = build_model(Path(tmp) / "w" / "model.onnx", args.width)
        reg = Registry(Path(tmp) / "reg")
        reg.publish(w.parent, {
            "name": "bench", "version": "1", "task": "semantic", "classes": ["crack", "rust"],
            "output_activation": "sigmoid", "tiling": {"tile": 1024, "overlap": 128},
        })
        engine = Engine(reg, device=args.device)
        print(f"{engine.device_report}; model: 3 conv layers, width {args.width}")
        img = synthetic_image(1024, 1024)
        pipe = engine.pipeline("bench")
        sess = pipe._sess  # the very session the engine uses  # type: ignore[attr-defined]
        x = normalize(img, pipe.manifest)
        sess.run(None, {"image": x})
        engine.propose(img, image_key="warm")
        counter = iter(range(10**9))
        # interleave so both see the same machine load (the machine is shared)
        bare, eng = [], []
        for _ in range(args.repeats):
            bare += timed(lambda: sess.run(None, {"image": x}), 1)
            eng += timed(lambda: engine.propose(img, image_key=f"k{next(counter)}"), 1)
        n_props = len(engine.propose(img, image_key="count"))
        b, e = statistics.median(bare), statistics.median(eng)
        print(f"1024x1024: bare InferenceSession.run {b * 1000:.1f} ms, Engine.propose {e * 1000:.1f} ms "
              f"({n_props} proposals), overhead {100 * (e - b) / b:.1f} % (median of {args.repeats})")
        cached = timed(lambda: engine.propose(img, image_key="count"), 3)
        print(f"1024x1024 cached result: {statistics.median(cached) * 1000:.2f} ms")
        shipped_overhead(args)
        big = synthetic_image(args.big_side, args.big_side, seed=2)
        tiles: list[int] = []
        t = time.perf_counter()
        props = engine.propose(big, image_key="big", progress=lambda d, n: tiles.append(n))
        dt = time.perf_counter() - t
        mp = args.big_side * args.big_side / 1e6
        print(f"{args.big_side}x{args.big_side} ({mp:.0f} MP, {tiles[-1] if tiles else 1} tiles of 1024, overlap 128): "
              f"Engine.propose {dt:.2f} s ({len(props)} proposals), {dt / mp * 1000:.0f} ms/MP")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
