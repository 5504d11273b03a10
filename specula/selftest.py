"""``specula self-test`` (also ``specula --self-test``): is this installation whole?

Runs without a display, from source or inside a bundle, in a temporary folder (the
user's projects, settings and registry are never touched):

  qt        the Qt platform plugin loads offscreen, a QImage is painted, a JPEG decodes
  runtime   ONNX Runtime loads; which providers it has and which it will use
  torch     present in a workstation build, absent in a field build
  sample    the sample project is copied and opened
  model     the shipped model the registry chooses for the palette (or, when none is
            shipped, a tiny built-in test model) loads
  propose   proposals are made and stored
  edit      a proposal is painted on (Mask.paint_disk), accepted and logged in one transaction
  export    the project is exported as COCO (RLE)
  reimport  the exported file is read back: the edited mask decodes (pycocotools) equal
  clicks    the shipped click-refinement model (the prompt tool's default) refines a
            proposal with one click through ONNX Runtime (torch is not imported), and the
            refined mask and its log row are stored in one transaction

  cuda-addon  only when the field bundle's CUDA add-on is there (or --require-cuda): its
            state, the CUDA libraries it loaded or misses

Prints one line per check (``ok`` or ``FAILED: reason``), exits 0 when all pass, else 1.
``--platform xcb`` runs the Qt check on the X server of $DISPLAY instead of offscreen
(the bundle's X11 plugin and its libraries then load); ``--require-cuda`` fails the
runtime and propose checks unless inference really runs on CUDA (scripts/gpu_check.sh).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

# A 4-class semantic model (background, mirror, glass, glass-in-mirror): a 1x1 convolution
# whose "mirror" logit is 4 x the sum of the normalised RGB values, so bright regions become
# mirror proposals. Made with onnx.helper (opset 13, dynamic height and width) and kept
# inline so that the self-test can propose in a bundle that ships no trained model.
_TEST_MODEL = base64.b64decode(
    "CAgSEHNwZWN1bGEtc2VsZnRlc3Q6ygEKGwoFaW1hZ2UKAVcKAUISBnNjb3JlcyIEQ29udhIIc2VsZnRlc3QqPwgECAMIAQgBEAFC"
    "AVdKMAAAAAAAAAAAAAAAAAAAgEAAAIBAAACAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACoZCAQQAUIBQkoQAAAAAAAAAAAAAADB"
    "AAAAwVohCgVpbWFnZRIYChYIARISCgIIAQoCCAMKAxIBaAoDEgF3YiIKBnNjb3JlcxIYChYIARISCgIIAQoCCAQKAxIBaAoDEgF3"
    "QgQKABAN"
)
_TEST_MANIFEST = {
    "name": "selftest-mirror-glass",
    "version": "1",
    "task": "semantic",
    "classes": ["background", "mirror", "glass", "glass-in-mirror"],
    "background_class": "background",
    "output_activation": "softmax",
    "sources": ["specula.selftest (built-in test model, not trained)"],
}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("self-test", help="check this installation without a display (exit 0 when whole)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder and print where it is")
    p.add_argument("--platform", default="offscreen",
                   help="Qt platform plugin for the qt check (default offscreen; xcb: the X server of $DISPLAY)")
    p.add_argument("--require-cuda", action="store_true",
                   help="fail unless inference runs on CUDA (for GPU machines)")
    p.set_defaults(handler=cmd_self_test)


class _Checks:
    """Runs named checks in order; one printed line each; later checks skip when a needed one failed."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.passed: list[str] = []
        self.state: dict[str, Any] = {}

    def run(self, name: str, fn: Callable[[], str], needs: tuple[str, ...] = ()) -> None:
        missing = [n for n in needs if n not in self.passed]
        if missing:
            self.failed.append(name)
            print(f"FAILED {name}: skipped, needs {', '.join(missing)}", flush=True)
            return
        t0 = time.perf_counter()
        try:
            detail = fn()
        except Exception as exc:  # noqa: BLE001 - every failure becomes one readable line
            self.failed.append(name)
            where = traceback.extract_tb(exc.__traceback__)[-1]
            print(f"FAILED {name}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                  f" (at {Path(where.filename).name}:{where.lineno})", flush=True)
            if os.environ.get("SPECULA_SELFTEST_TRACEBACK"):
                traceback.print_exc()
            return
        self.passed.append(name)
        print(f"ok     {name}: {detail} ({(time.perf_counter() - t0) * 1000:.0f} ms)", flush=True)


def cmd_self_test(args: argparse.Namespace) -> int:
    # the new options are passed only when given, so that a plain `specula self-test` calls
    # run_self_test(keep=...) exactly as before
    options: dict[str, Any] = {"keep": getattr(args, "keep", False)}
    if getattr(args, "platform", "offscreen") != "offscreen":
        options["platform"] = args.platform
    if getattr(args, "require_cuda", False):
        options["require_cuda"] = True
    return run_self_test(**options)


def run_self_test(keep: bool = False, platform: str = "offscreen", require_cuda: bool = False) -> int:
    from appinfo import __version__
    from appinfo.about import bundle_kind

    # no display needed by default; set before anything imports Qt (the desktop is never
    # imported here). Another platform (xcb under Xvfb) proves the bundle's plugin loads.
    os.environ["QT_QPA_PLATFORM"] = platform
    tmp = Path(tempfile.mkdtemp(prefix="specula-selftest-"))
    # the user's data folder (registry, settings) is never touched: point it at the temp folder
    old_home = os.environ.get("SPECULA_HOME")
    os.environ["SPECULA_HOME"] = str(tmp / "home")
    print(f"specula {__version__} self-test ({bundle_kind()} build, Python {sys.version.split()[0]}, "
          f"{'frozen' if getattr(sys, 'frozen', False) else 'from source'})", flush=True)
    checks = _Checks()
    checks.state["require_cuda"] = require_cuda
    try:
        _run_checks(checks, tmp)
    finally:
        if old_home is None:
            os.environ.pop("SPECULA_HOME", None)
        else:
            os.environ["SPECULA_HOME"] = old_home
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    total = len(checks.failed) + len(checks.passed)
    if checks.failed:
        print(f"self-test FAILED: {len(checks.failed)} of {total} checks ({', '.join(checks.failed)})", flush=True)
        return 1
    print(f"self-test passed: {total} checks", flush=True)
    return 0


def _run_checks(checks: _Checks, tmp: Path) -> None:
    s = checks.state

    def qt() -> str:
        from PySide6 import QtCore, QtGui

        app = QtGui.QGuiApplication.instance() or QtGui.QGuiApplication(["specula-self-test"])
        s["qt_app"] = app  # kept alive until the end of the checks
        image = QtGui.QImage(32, 16, QtGui.QImage.Format.Format_RGB32)
        image.fill(QtGui.QColor("white"))
        painter = QtGui.QPainter(image)
        painter.fillRect(QtCore.QRect(0, 0, 8, 8), QtGui.QColor(255, 0, 0))
        painter.end()
        if image.pixelColor(2, 2).getRgb()[:3] != (255, 0, 0) or image.pixelColor(20, 10).getRgb()[:3] != (255, 255, 255):
            raise RuntimeError("painting a QImage gave the wrong pixels")
        from annotation.resources import asset_path

        jpg = next(iter(sorted(asset_path("sample_project").glob("*.jpg"))), None)
        decoded = ""
        if jpg is not None:
            if QtGui.QImage(str(jpg)).isNull():
                raise RuntimeError(f"Qt cannot decode {jpg.name} (the imageformats plugins are missing)")
            decoded = ", JPEG decodes"
        return f"platform '{QtGui.QGuiApplication.platformName()}', Qt {QtCore.qVersion()}, QImage painted{decoded}"

    def runtime() -> str:
        import onnxruntime as ort

        from inference.runtime import choose_providers

        report = choose_providers("cuda" if s["require_cuda"] else "auto")
        text = f"onnxruntime {ort.__version__}, providers {', '.join(ort.get_available_providers())}; {report}"
        if s["require_cuda"] and report.device != "cuda":
            raise RuntimeError(f"CUDA required, not used: {text}")
        return text

    def cuda_addon() -> str:
        # the entry point (packaging/cuda_addon.py) leaves the add-on's state in the
        # environment once onnxruntime was imported through it
        from appinfo.about import bundle_kind

        status = os.environ.get("SPECULA_CUDA_ADDON", "")
        if not status:
            if s["require_cuda"] and getattr(sys, "frozen", False) and bundle_kind() == "field":
                raise RuntimeError("no CUDA add-on beside the executable (build.py cuda-addon; copy cuda-addon/ there)")
            return "none (onnxruntime is the installed package)"
        usable = os.environ.get("SPECULA_CUDA_ADDON_USABLE")
        # broken (a CUDA library missing next to a GPU) fails; no GPU at all only when CUDA is required
        if usable == "0" or (s["require_cuda"] and usable != "1"):
            raise RuntimeError(status)
        return status

    def torch() -> str:
        import importlib.util

        from appinfo.about import bundle_kind

        kind = bundle_kind()
        present = importlib.util.find_spec("torch") is not None
        if kind == "field":
            if present:
                raise RuntimeError("torch is inside a field bundle (it must not be)")
            return "absent, as a field bundle should be"
        if not present:
            if kind == "workstation":
                raise RuntimeError("torch is missing from a workstation bundle (`specula train` cannot run)")
            return "not installed (training needs the 'train' extra)"
        import torch as _torch

        _ = (_torch.ones(2, 2) @ _torch.ones(2, 2)).sum().item()
        return f"torch {_torch.__version__} computes (CUDA {'available' if _torch.cuda.is_available() else 'not available'})"

    def sample() -> str:
        from annotation.resources import asset_path
        from annotation.store import ProjectStore

        src = asset_path("sample_project")
        dst = tmp / "sample_project"
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.py", "specula.db*"))
        store = ProjectStore.open(dst)
        s["store"] = store
        images = store.images()
        bad = [im.path for im in images if im.error]
        if not images or bad:
            raise RuntimeError(f"{len(images)} images, unreadable: {bad}")
        return f"{len(images)} images in {dst.name}, palette '{store.palette.name}'"

    def model() -> str:
        from annotation.resources import asset_path
        from inference.registry import Registry

        registry = Registry(tmp / "home" / "models", [asset_path("models")])
        info, why = registry.model_for_palette(s["store"].palette)
        note = "shipped, chosen for the palette"
        if info is None:
            folder = tmp / "selftest-model"
            folder.mkdir()
            (folder / "model.onnx").write_bytes(_TEST_MODEL)
            info = registry.publish(folder, _TEST_MANIFEST)
            note = f"built-in test model, because {why}"
        s["registry"], s["info"] = registry, info
        return f"{info.name} {info.version} ({info.task}; {note})"

    def propose() -> str:
        from specula.headless import propose_store

        result = propose_store(s["store"], s["info"], s["registry"])
        if result["errors"]:
            raise RuntimeError(f"images not proposed: {result['errors']}")
        proposals = s["store"].instances(states=["proposed"])
        note = ""
        if not proposals and s["info"].name != _TEST_MANIFEST["name"]:
            # a shipped model may rightly see nothing in the sample; the edit and export
            # checks still need a proposal, so the built-in test model makes some
            folder = tmp / "selftest-model"
            folder.mkdir()
            (folder / "model.onnx").write_bytes(_TEST_MODEL)
            test_info = s["registry"].publish(folder, _TEST_MANIFEST)
            result = propose_store(s["store"], test_info, s["registry"])
            proposals = s["store"].instances(states=["proposed"])
            note = f" (by the built-in test model: {s['info'].name} proposed nothing on the sample)"
        if not proposals:
            raise RuntimeError(f"no proposals on {result['images']} images")
        if s["require_cuda"] and not str(result["device"]).startswith("inference on CUDA"):
            raise RuntimeError(f"CUDA required, proposals ran elsewhere: {result['device']}")
        s["proposals"] = proposals
        return f"{len(proposals)} proposals on {result['images']} images{note}; {result['device']}"

    def clusters() -> str:
        from annotation.clusters import ClusterReview, review_items

        store = s["store"]
        vectors = store.embeddings([p.id for p in s["proposals"]])
        if len(vectors) != len(s["proposals"]):
            raise RuntimeError(f"{len(s['proposals']) - len(vectors)} proposals were stored without an embedding")
        review = ClusterReview(review_items(store), target_size=2)  # fastcluster's native code runs
        return f"{len(vectors)} embeddings of {sorted({v.size for v in vectors.values()})} values, " \
               f"{len(review.clusters)} clusters"

    def edit() -> str:
        from annotation.document import InstanceState

        store = s["store"]
        inst = max(s["proposals"], key=lambda i: i.mask.area)
        before = inst.mask.area
        x0, y0, x1, y1 = inst.mask.bbox
        h, w = inst.mask.image_size
        # a dab just outside the box corner (inside the image) so the mask surely changes
        cx, cy = min(x1 + 3, w - 4), min(y1 + 3, h - 4)
        started = time.time()
        inst.mask.paint_disk(cx, cy, 6)
        inst.state = InstanceState.ACCEPTED
        with store.transaction():
            store.update_instance(inst)
            store.log("modify", image_id=inst.image_id, instance_id=inst.id, class_name=inst.class_name,
                      started=started, tool="brush", radius=6)
            store.log("accept", image_id=inst.image_id, instance_id=inst.id, class_name=inst.class_name)
        stored = store.instance(inst.id)
        if stored.state is not InstanceState.ACCEPTED or stored.mask != inst.mask or stored.mask.area == before:
            raise RuntimeError("the edited, accepted mask did not come back from the store as written")
        logged = [i.action for i in store.interactions(image_id=inst.image_id) if i.instance_id == inst.id]
        if logged[-2:] != ["modify", "accept"]:
            raise RuntimeError(f"the interaction log holds {logged}")
        s["edited"] = stored
        image = store.image(inst.image_id)
        return f"instance {inst.id} ({inst.class_name}) on {image.path}: {before} -> {stored.mask.area} px, accepted, logged"

    def export() -> str:
        from specula.headless import export_coco

        out = tmp / "export" / "coco.json"
        warnings = export_coco(s["store"], out, states=("accepted",))
        s["coco"] = out
        return f"{out.name}, {out.stat().st_size} bytes" + (f", {len(warnings)} warnings" if warnings else "")

    def reimport() -> str:
        import numpy as np
        from pycocotools import mask as coco_mask

        data = json.loads(s["coco"].read_text(encoding="utf-8"))
        edited = s["edited"]
        image = s["store"].image(edited.image_id)
        image_ids = [im["id"] for im in data["images"] if im["file_name"] == image.path]
        anns = [a for a in data["annotations"] if a["image_id"] in image_ids]
        if len(data["annotations"]) != 1 or len(anns) != 1:
            raise RuntimeError(f"expected the one accepted instance, found {len(data['annotations'])} annotations")
        seg = dict(anns[0]["segmentation"])
        if isinstance(seg.get("counts"), str):
            seg["counts"] = seg["counts"].encode("ascii")
        decoded = coco_mask.decode(seg).astype(bool)
        if not np.array_equal(decoded, edited.mask.to_full()):
            raise RuntimeError("the exported mask decodes to other pixels than the edited one")
        names = {c["id"]: c["name"] for c in data["categories"]}
        if names.get(anns[0]["category_id"]) != edited.class_name:
            raise RuntimeError(f"exported class {names.get(anns[0]['category_id'])}, edited {edited.class_name}")
        extra = ""
        try:
            from annotation.formats.coco import import_coco
        except ImportError:
            pass
        else:
            result = import_coco(s["coco"], tmp / "sample_project")
            masks = [i.mask for im in result.images for i in im.instances]
            if len(masks) != 1 or masks[0] != edited.mask:
                raise RuntimeError("annotation.formats.coco.import_coco reads back another mask")
            extra = ", import_coco reads it back equal"
        return f"{int(decoded.sum())} px decode equal with pycocotools{extra}"

    def clicks() -> str:
        import cv2
        import numpy as np

        from annotation.images import load_image
        from inference.engine import Engine
        from inference.pipelines.prompt_choice import choose_prompt_model

        had_torch = sys.modules.get("torch") is not None
        info = choose_prompt_model(s["registry"])
        if info is None or info.task != "clicks" or not info.read_only:
            raise RuntimeError("no click-refinement model shipped in assets/models (the prompt tool would "
                               f"fall back to GrabCut); found {info.name if info else 'none'}")
        store = s["store"]
        edited = s.get("edited")
        waiting = [i for i in store.instances(states=["proposed"]) if edited is None or i.id != edited.id]
        inst = max(waiting or [store.instance(s["proposals"][0].id)], key=lambda i: i.mask.area)
        image = store.image(inst.image_id)
        rgb = load_image(store.root / image.path).rgb
        # one positive click at the mask's innermost pixel, the mask as the previous one
        x0, y0, x1, y1 = inst.mask.bbox
        inner = cv2.distanceTransform(np.pad(inst.mask.read_box((x0, y0, x1, y1)).astype(np.uint8), 1),
                                      cv2.DIST_L2, 3)[1:-1, 1:-1]
        cy, cx = np.unravel_index(int(np.argmax(inner)), inner.shape)
        click = (float(x0 + cx), float(y0 + cy))
        # the editor's path: the engine's prompt session (the registry's choice) refining the mask
        session = Engine(s["registry"], device="cpu").prompt_session()
        if (session.model, session.version) != (info.name, info.version):
            raise RuntimeError(f"the prompt tool would use {session.model}@{session.version}, not {info.name}")
        session.set_image(rgb)
        t0 = time.perf_counter()
        refined = session.predict(np.array([click]), np.array([1]), previous=inst.mask)
        ms = (time.perf_counter() - t0) * 1000
        if refined.image_size != inst.mask.image_size or refined.is_empty():
            raise RuntimeError(f"the click model answered an empty mask or one of another size ({refined.image_size})")
        if not had_torch and sys.modules.get("torch") is not None:
            raise RuntimeError("refining with the click model imported torch")
        iou = refined.iou(inst.mask)
        inst.mask = refined
        with store.transaction():
            store.update_instance(inst)
            store.log("prompt_refine", image_id=inst.image_id, instance_id=inst.id, class_name=inst.class_name,
                      tool="prompt_refine", model=f"{info.name}@{info.version}",
                      points=[{"x": click[0], "y": click[1], "positive": True, "model": f"{info.name}@{info.version}",
                               "t": round(time.time(), 3)}])
        if store.instance(inst.id).mask != refined:
            raise RuntimeError("the refined mask did not come back from the store as written")
        return (f"{info.name} {info.version} refined instance {inst.id} with one click in {ms:.0f} ms "
                f"({inst.mask.area} px, IoU {iou:.2f} with the mask before), stored and logged")

    checks.run("qt", qt)
    checks.run("runtime", runtime)
    if os.environ.get("SPECULA_CUDA_ADDON") or s["require_cuda"]:
        checks.run("cuda-addon", cuda_addon)
    checks.run("torch", torch)
    checks.run("sample", sample)
    checks.run("model", model, needs=("sample",))
    checks.run("propose", propose, needs=("model",))
    checks.run("clusters", clusters, needs=("propose",))
    checks.run("edit", edit, needs=("propose",))
    checks.run("export", export, needs=("edit",))
    checks.run("reimport", reimport, needs=("export",))
    checks.run("clicks", clicks, needs=("propose",))
    store = s.get("store")
    if store is not None:
        store.close()
