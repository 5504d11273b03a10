"""The semantic pipeline's random-walk switch on the shipped glass model's held-out photos:
per-image glass IoU through ``Engine.propose`` with and without it, and seconds per photo.

    .venv/bin/python bench/bench_random_walk.py [--photos 80]

The photos are the model's own test images (its manifest's ``test_image_keys`` from
glass-gdd), under ``../shared/data`` or ``$SPECULA_DATA``. IoU: the union of the glass
proposals against the truth mask, per photo (1 where both are empty), averaged.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SPECULA_DATA", REPO.parent / "shared" / "data"))
MODEL = "mirror-glass-semantic"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=80)
    args = ap.parse_args()
    from inference.engine import Engine
    from inference.registry import Registry

    engine = Engine(Registry.default(), device="cpu")
    info = engine.pipeline(MODEL).info
    keys = [k for k in info.manifest.training["data"]["test_image_keys"] if k.startswith("glass-gdd")][: args.photos]
    keys = [k for k in keys if (DATA / k).exists()]
    if not keys:
        print(f"no held-out glass-gdd photo of {MODEL} under {DATA} (set SPECULA_DATA)")
        return 2
    ious: dict[bool, list[float]] = {False: [], True: []}
    seconds = {False: 0.0, True: 0.0}
    for key in keys:
        rgb = cv2.cvtColor(cv2.imread(str(DATA / key)), cv2.COLOR_BGR2RGB)
        truth = cv2.imread(str(DATA / "glass-gdd" / "mask" / (Path(key).stem + ".png")), cv2.IMREAD_GRAYSCALE) > 127
        for walk in (False, True):
            t = time.perf_counter()
            props = engine.propose(rgb, model=MODEL, params={"random_walk": walk}, image_key=f"{key}:{walk}")
            seconds[walk] += time.perf_counter() - t
            pred = np.zeros(truth.shape, bool)
            for p in props:
                if p.class_name == "glass":
                    pred |= p.mask.to_full()
            union = int((pred | truth).sum())
            ious[walk].append(1.0 if union == 0 else float((pred & truth).sum()) / union)
    for walk in (False, True):
        print(f"random_walk={str(walk).lower():5s}: per-image glass IoU {np.mean(ious[walk]):.3f} on {len(keys)} "
              f"held-out photos, {seconds[walk] / len(keys):.2f} s per photo")
    print(json.dumps({"photos": len(keys), "iou": {str(k): float(np.mean(v)) for k, v in ious.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
