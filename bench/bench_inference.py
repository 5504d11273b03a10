"""Engine overhead over the bare ONNX Runtime session, on real photos with the shipped models
and on a synthetic image with a tiny model, and the throughput of a project run.

    .venv/bin/python bench/bench_inference.py [--photos 20] [--repeats 20] [--device cpu]

Everything is measured in one run and interleaved (the machine is shared):

- shipped models, each on ``--photos`` real photos (``mirror-glass-semantic`` on GDD,
  ``cracks-semantic`` on DeepCrack and CrackForest, from ``../shared/data`` or
  ``$SPECULA_DATA``): per photo, ``--repeats`` pairs of (the bare ``InferenceSession.run``
  on exactly the tensors the pipeline feeds it, both flip passes where the pipeline runs
  flip test-time augmentation) and (``Engine.propose`` on the same photo, same session,
  result cache bypassed); the overhead of each pair is ``engine / bare - 1``, in wall
  time and in process CPU time; printed: the median and the 10th-90th percentiles over
  all pairs, and the reference path (``full_resolution``) the same way for comparison;
- the tiny 3-layer conv model on a 1024 x 1024 image (and a 25-MP tiled image), as before;
- images per second of a project run (``inference.propose.image_proposals``) with the
  post-processing of each image overlapped with the next image's network pass, against
  the same run without (``overlap=False``), alternating runs.

Needs the ``onnx`` package to build the tiny model (no torch).
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


def data_root() -> Path:
    import os

    return Path(os.environ.get("SPECULA_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


# the photos each shipped model is measured on (the glass model's test split also holds mirror photos)
PHOTO_SETS = {"mirror-glass-semantic": ("glass-gdd",), "cracks-semantic": ("cracks-deepcrack", "cracks-cfd")}


def held_out_photos(pipe, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    """The first ``n`` of the model's test images (never seen in training), per data set in turn."""
    sets = PHOTO_SETS.get(pipe.info.name)
    keys = [k for k in pipe.manifest.training.get("data", {}).get("test_image_keys", [])
            if (data_root() / k).is_file() and (sets is None or k.split("/")[0] in sets)]
    by_set: dict[str, list[str]] = {}
    for k in keys:
        by_set.setdefault(k.split("/")[0], []).append(k)
    out: list[str] = []
    while len(out) < n and any(by_set.values()):
        for name in sorted(by_set):
            if by_set[name] and len(out) < n:
                out.append(by_set[name].pop(0))
    return out


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    return np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1])


def spread(values: list[float]) -> str:
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return f"median {100 * p50:.1f} % (10th-90th percentile {100 * p10:.1f} to {100 * p90:.1f} %)"


def shipped_overhead(engine: Engine, name: str, args: argparse.Namespace) -> None:
    """Engine overhead on real photos: ``Engine.propose`` against the bare session runs it makes.

    The bare side is the session alone on the very tensors the pipeline prepared for the
    photo (resized or padded, normalised, and the mirrored copy with flip TTA), so the
    overhead is everything the engine adds: reading the photo's pixels into the network's
    input, activation, post-processing into proposals.
    """
    try:
        pipe = engine.pipeline(name)
    except Exception as exc:  # noqa: BLE001 - a missing shipped model is reported, not fatal
        print(f"(no shipped model {name}: {exc})")
        return
    photos = held_out_photos(pipe, args.photos)
    if not photos:
        print(f"({name}: none of its test photos is under {data_root()}; skipped)")
        return
    sess = pipe._sess  # type: ignore[attr-defined]
    feed_name = sess.get_inputs()[0].name
    counter = iter(range(10**9))
    over_wall: list[float] = []
    over_cpu: list[float] = []
    ref_wall: list[float] = []
    bare_ms: list[float] = []
    eng_ms: list[float] = []
    counts: list[int] = []
    for key in photos:
        rgb = read_rgb(data_root() / key)
        inputs: list[np.ndarray] = []
        run = pipe._run  # type: ignore[attr-defined]
        pipe._run = lambda x: (inputs.append(x.copy()), run(x))[1]  # type: ignore[attr-defined]
        counts.append(len(engine.propose(rgb, model=name, image_key=f"warm{next(counter)}")))
        pipe._run = run  # type: ignore[attr-defined]

        def bare() -> None:
            for x in inputs:
                sess.run(None, {feed_name: x})

        def eng() -> None:
            engine.propose(rgb, model=name, image_key=f"k{next(counter)}")

        def ref() -> None:
            engine.propose(rgb, model=name, params={"full_resolution": True}, image_key=f"r{next(counter)}")

        for r in range(args.repeats):
            (bw, bc), (ew, ec) = timed2(bare), timed2(eng)
            over_wall.append(ew / bw - 1)
            over_cpu.append(ec / bc - 1)
            bare_ms.append(bw * 1000)
            eng_ms.append(ew * 1000)
            if r < args.ref_repeats:
                (bw2, _), (rw, _) = timed2(bare), timed2(ref)
                ref_wall.append(rw / bw2 - 1)
    size = "x".join(map(str, pipe._fixed)) + " input" if pipe._fixed else "native resolution, padded to 32"  # type: ignore[attr-defined]
    flip = ", flip TTA (2 passes)" if pipe.params()["flip_tta"] else ""
    sets = sorted({k.split("/")[0] for k in photos})
    print(f"{name}@{pipe.info.version} ({size}{flip}) on {len(photos)} held-out photos of {', '.join(sets)}, "
          f"{args.repeats} interleaved pairs each ({sum(counts)} proposals in all):")
    print(f"  bare session.run median {statistics.median(bare_ms):.1f} ms, Engine.propose median "
          f"{statistics.median(eng_ms):.1f} ms")
    print(f"  engine overhead, wall: {spread(over_wall)}; CPU time: {spread(over_cpu)}")
    if ref_wall:
        print(f"  the reference path (full_resolution=True), wall: {spread(ref_wall)} "
              f"({args.ref_repeats} pairs per photo)")
    if getattr(pipe, "task", "") == "semantic":
        overhead_stages(pipe, photos, statistics.median(bare_ms))


def overhead_stages(pipe, photos: list[str], bare_ms: float) -> None:  # type: ignore[no-untyped-def]
    """Where a semantic pipeline's overhead goes, each stage timed alone on the same photos
    (median ms per photo, and as a share of the bare run): preparing the input (resize or
    padding, normalisation, the mirrored copy), activation and averaging of the passes
    (``semantic_network_maps`` without its network: the session's outputs are replayed),
    post-processing into proposals, embeddings."""
    from inference.embedding import attach_embeddings
    from inference.pipelines.base import normalize_with, pad_to_multiple, resize_image, semantic_network_maps
    from inference.pipelines.postprocess import network_maps_to_proposals

    man, p = pipe.manifest, pipe.params()
    thr = float(p["threshold"])
    stages: dict[str, list[float]] = {"input": [], "activation": [], "post-processing": [], "embeddings": []}
    for key in photos:
        rgb = read_rgb(data_root() / key)
        outputs: list = []

        def record(x, run=pipe._run):  # type: ignore[no-untyped-def]
            outputs.append(run(x))
            return outputs[-1]

        calls: list = []  # the session's outputs, handed back in order

        def replay(x):  # type: ignore[no-untyped-def]
            return calls.pop(0)

        semantic_network_maps(rgb, record, input_size=pipe._fixed, mean=man.mean, std=man.std,  # type: ignore[attr-defined]
                              activation=man.output_activation, flip=bool(p["flip_tta"]),
                              pad_multiple=int(p["pad_multiple"]), keep_logits=0.0 < thr < 1.0)
        for _ in range(5):
            t = time.perf_counter()
            src = resize_image(rgb, tuple(pipe._fixed)) if pipe._fixed else pad_to_multiple(rgb, int(p["pad_multiple"]))  # type: ignore[attr-defined]
            x = normalize_with(src, man.mean, man.std)
            if p["flip_tta"]:
                np.ascontiguousarray(x[:, :, :, ::-1])
            t1 = time.perf_counter()
            calls[:] = outputs
            net = semantic_network_maps(rgb, replay, input_size=pipe._fixed, mean=man.mean, std=man.std,  # type: ignore[attr-defined]
                                        activation=man.output_activation, flip=bool(p["flip_tta"]),
                                        pad_multiple=int(p["pad_multiple"]), keep_logits=0.0 < thr < 1.0)
            t2 = time.perf_counter()
            props = network_maps_to_proposals(
                net, rgb.shape[:2], man.classes, pipe.info, threshold=thr, background=man.background_class,
                min_area=int(p["min_area"]), split_panes=bool(p["split_panes"]),
                boundary_threshold=float(p["boundary_threshold"]), min_seed_area=int(p["min_seed_area"]))
            t3 = time.perf_counter()
            attach_embeddings(props, rgb, net.features)
            t4 = time.perf_counter()
            # the replayed call repeats the input preparation: activation is what it adds
            stages["input"].append(t1 - t)
            stages["activation"].append(max(0.0, (t2 - t1) - (t1 - t)))
            stages["post-processing"].append(t3 - t2)
            stages["embeddings"].append(t4 - t3)
    parts = ", ".join(f"{k} {1000 * statistics.median(v):.1f} ms ({100 * statistics.median(v) * 1000 / bare_ms:.1f} %)"
                      for k, v in stages.items())
    print(f"  where it goes, each stage alone (median per photo; share of the bare run): {parts}")


def timed2(fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(wall, process CPU) seconds of one call."""
    c, t = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def project_throughput(engine: Engine, name: str, args: argparse.Namespace) -> None:
    """Images per second of ``image_proposals`` over the photos, with and without overlap."""
    from annotation.document import ImageRecord
    from inference.propose import image_proposals

    try:
        pipe = engine.pipeline(name)
    except Exception:  # noqa: BLE001
        return
    photos = held_out_photos(pipe, args.photos)
    if not photos:
        return
    rate: dict[bool, list[float]] = {True: [], False: []}
    for run in range(2 * args.runs):
        overlap = run % 2 == 0
        # a fresh key per image and run: the engine's result cache never answers
        records = [ImageRecord(k, 0, 0, id=i + 1, sha1=f"run{run}-{i}") for i, k in enumerate(photos)]
        t = time.perf_counter()
        n = sum(1 for _ in image_proposals(data_root(), records, engine, name, overlap=overlap))
        rate[overlap].append(n / (time.perf_counter() - t))
    on, off = statistics.median(rate[True]), statistics.median(rate[False])
    print(f"project run, {name} on {len(photos)} photos (read, propose; median of {args.runs} alternating runs): "
          f"{on:.2f} images/s with post-processing overlapped, {off:.2f} without ({on / off:.2f}x)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--big-side", type=int, default=5000, help="side of the square large image (5000 = 25 MP)")
    ap.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--width", type=int, default=8, help="channels of the hidden conv layers (even)")
    ap.add_argument("--shipped", nargs="*", default=["mirror-glass-semantic", "cracks-semantic"],
                    help="shipped models for the real-photo comparison")
    ap.add_argument("--photos", type=int, default=20, help="real photos per shipped model")
    ap.add_argument("--ref-repeats", type=int, default=3, help="pairs per photo against the reference path")
    ap.add_argument("--runs", type=int, default=3, help="project runs each way")
    ap.add_argument("--overhead-only", action="store_true",
                    help="stop after the shipped models' overhead (no project runs, no tiny model)")
    args = ap.parse_args()
    shipped = Engine(Registry.default(), device=args.device)
    print(shipped.device_report)
    for name in args.shipped:
        shipped_overhead(shipped, name, args)
    if args.overhead_only:
        return 0
    for name in args.shipped:
        project_throughput(shipped, name, args)
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
        bare, eng, over, over_ref = [], [], [], []
        for r in range(args.repeats):
            (bw, _), (ew, _) = timed2(lambda: sess.run(None, {"image": x})), \
                timed2(lambda: engine.propose(img, image_key=f"k{next(counter)}"))
            bare.append(bw)
            eng.append(ew)
            over.append(ew / bw - 1)
            if r < args.repeats // 2:
                (bw, _), (rw, _) = timed2(lambda: sess.run(None, {"image": x})), \
                    timed2(lambda: engine.propose(img, params={"full_resolution": True}, image_key=f"r{next(counter)}"))
                over_ref.append(rw / bw - 1)
        n_props = len(engine.propose(img, image_key="count"))
        b, e = statistics.median(bare), statistics.median(eng)
        print(f"1024x1024: bare InferenceSession.run {b * 1000:.1f} ms, Engine.propose {e * 1000:.1f} ms "
              f"({n_props} proposals); overhead {spread(over)} over {args.repeats} pairs; "
              f"reference path {spread(over_ref)}")
        cached = timed(lambda: engine.propose(img, image_key="count"), 3)
        print(f"1024x1024 cached result: {statistics.median(cached) * 1000:.2f} ms")
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
