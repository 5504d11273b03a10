"""Training throughput and ONNX-vs-PyTorch inference time of the default models, in one run.

    .venv/bin/python bench/bench_training.py [--steps 5] [--runs 10] [--threads N]

For each default model in ``assets/models`` (``*-semantic``): the semantic
network at the manifest's input size is trained for a few steps on random
tensors (images/s; what the data loader adds is not measured), then one image is
inferred with PyTorch (same architecture; the shipped weights exist only as ONNX,
and the values of the weights do not change the time) and with ONNX Runtime on the
shipped ``model.onnx``. Prints the ratio ONNX / PyTorch measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def median_time(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=REPO / "assets" / "models")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    from training.models import SemanticNet
    from training.semantic import segmentation_loss

    if args.threads:
        torch.set_num_threads(args.threads)
    manifests = sorted(args.models.glob("*/*/manifest.json"))
    if not manifests:
        print(f"no default models in {args.models}; train them with python -m training.default_models")
        return 1
    for mpath in manifests:
        man = json.loads(mpath.read_text())
        if man["task"] != "semantic":
            continue
        h, w = man["input_size"]
        k = len(man["classes"])
        model = SemanticNet(k, pretrained=False)
        optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x = torch.randn(args.batch, 3, h, w)
        y = torch.randint(0, k, (args.batch, h, w))

        def step() -> None:
            model.train()
            loss = segmentation_loss(model(x), y)
            optim.zero_grad()
            loss.backward()
            optim.step()

        step()
        t = time.perf_counter()
        for _ in range(args.steps):
            step()
        train_ips = args.steps * args.batch / (time.perf_counter() - t)

        model.eval()
        one = torch.randn(1, 3, h, w)

        def torch_infer() -> None:
            with torch.no_grad():
                model(one)

        opts = ort.SessionOptions()
        if args.threads:
            opts.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(str(mpath.parent / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: one.numpy().astype(np.float32)}
        t_torch = median_time(torch_infer, args.runs)
        t_onnx = median_time(lambda: sess.run(None, feed), args.runs)
        size_mb = (mpath.parent / "model.onnx").stat().st_size / 1e6
        print(f"{man['name']}@{man['version']} ({h}x{w}, {size_mb:.1f} MB): training {train_ips:.2f} images/s "
              f"(batch {args.batch}); inference PyTorch {t_torch * 1000:.0f} ms, ONNX Runtime {t_onnx * 1000:.0f} ms, "
              f"ratio ONNX/PyTorch {t_onnx / t_torch:.2f} (torch threads {torch.get_num_threads()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
