"""Build a Specula bundle with PyInstaller, then smoke-test the executable that was built.

    python packaging/build.py field|workstation [--skip-build] [--out DIR] [--max-mb MB]
    python packaging/build.py cuda-addon [--with-cuda-runtime] [--field DIR] [--out DIR]

``field`` and ``workstation``: PyInstaller on ``packaging/<kind>.spec`` (one folder:
``<out>/specula/``). ``cuda-addon``: the field bundle's CUDA add-on (cuda_addon.py says how
the bundle picks it up), written into ``<out>/specula/cuda-addon/`` beside a hard-linked
copy of the field bundle of ``--field`` (default dist/field), so that the pair is tested as
a user would have it; ``cuda-addon/`` alone is what ships. Then, against the BUILT
executable, never the source:

  1. ``specula --version``                    prints the version and the shipped models
  2. ``specula --self-test`` (offscreen)      must exit 0; on a machine with an NVIDIA GPU the
                                               add-on's run adds --require-cuda
  3. X11: ``ldd`` of the X11 platform plugin finds every library in the bundle (or among the
     few every X11 desktop has, bundle_check.X11_SYSTEM_OK); ``specula --self-test
     --platform xcb`` and one start-up (below) on an Xvfb server (``apt-get install xvfb``;
     --skip-x11 to leave out)
  4. size on disk, the largest files; the field bundle fails above --max-mb (400 decimal MB)
  5. start time to a usable window: with ``SPECULA_STARTUP_PROBE=1`` the desktop opens the
     main window (offscreen, on a copy of the sample project), prints ``startup_ms=<ms>``
     once it is shown and painted, and exits (desktop.app); ``SPECULA_T0`` passes the
     launch time, so the figure includes the bootloader and all imports (median of 3 runs
     after one warm-up run)
  6. workstation only: ``specula train <tiny project> --task semantic --epochs 1`` (its
     JSON lines are shown)

Build machine (Debian/Ubuntu): ``apt-get install xvfb libxcb-icccm4 libxcb-keysyms1
libxcb-cursor0 libwayland-cursor0 libwayland-egl1 icu-devtools gcc`` (the X11 and Wayland
libraries are bundled from it; icupkg and gcc trim ICU's data, icu_data.py).

Exits 1 when the build or a smoke test fails.
"""
from __future__ import annotations

import argparse
import compileall
import contextlib
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bundle_check import unresolved_in_bundle, x11_problems  # noqa: E402
from bundle_config import (  # noqa: E402
    ADDON_DIR, ADDON_MANIFEST, ADDON_ORT_SKIPPED, CUDA_COMPANIONS, CUDA_DRIVER, CUDA_LIBRARIES,
    CUDA_PROVIDER_PREFIX, FIELD_MAX_BYTES, KINDS, REPO, read_version,
)

EXE_NAME = "specula.exe" if os.name == "nt" else "specula"
BUILD_KINDS = (*KINDS, "cuda-addon")
# libraries of the C runtime every Linux has: never listed among the add-on's CUDA libraries
_C_RUNTIME = re.compile(r"^(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s)\.so|^ld-linux")


def say(text: str = "") -> None:
    print(text, flush=True)


def step(title: str) -> None:
    say(f"\n=== {title}")


def quote_output(text: str, limit: int = 60) -> None:
    lines = text.rstrip().splitlines()
    if len(lines) > limit:
        say(f"    ... ({len(lines) - limit} lines not shown)")
        lines = lines[-limit:]
    for line in lines:
        say(f"    | {line}")


def smoke_env(home: Path) -> dict:
    env = dict(os.environ)
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["SPECULA_HOME"] = str(home)  # never the builder's own registry or settings
    env.pop("PYTHONPATH", None)  # the bundle must not lean on the source tree
    env.pop("SPECULA_STARTUP_PROBE", None)
    for name in ("SPECULA_CUDA_ADDON", "SPECULA_CUDA_ADDON_USABLE", "SPECULA_CUDA_ADDON_REPORTED"):
        env.pop(name, None)  # each run's own add-on state, not an inherited one
    return env


def run_pyinstaller(kind: str, out: Path) -> None:
    step(f"PyInstaller: {kind} bundle -> {out / 'specula'}")
    cmd = [
        sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
        "--distpath", str(out), "--workpath", str(REPO / "build" / kind), str(HERE / f"{kind}.spec"),
    ]
    say("    " + " ".join(cmd))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"build.py: PyInstaller failed (exit {proc.returncode}); see its output above")
    say(f"    built in {time.perf_counter() - t0:.0f} s")


# ------------------------------------------------------------------ the CUDA add-on
def _onnxruntime_dir() -> Path:
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("build.py: onnxruntime is not installed in this Python")
    return Path(list(spec.submodule_search_locations)[0])


def _ort_build_info(ort_dir: Path) -> dict[str, str]:
    """``__version__`` and ``cuda_version`` from onnxruntime's build info, read without importing it."""
    text = (ort_dir / "capi" / "build_and_package_info.py").read_text(encoding="utf-8")
    return dict(re.findall(r"^(\w+)\s*=\s*'([^']*)'", text, re.M))


def _nvidia_library(soname: str) -> Optional[Path]:
    """``soname`` in the pip wheels of NVIDIA's libraries (site-packages/nvidia/*/lib), if installed."""
    spec = importlib.util.find_spec("nvidia")
    roots = list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []
    for root in roots:
        for path in sorted(Path(root).glob(f"*/lib/{soname}")):
            if path.is_file():
                return path
    return None


def build_cuda_addon(dest: Path, with_runtime: bool) -> dict:
    """Write the CUDA add-on folder ``dest`` from this Python's onnxruntime-gpu; returns its manifest."""
    from bundle_check import elf_needed

    ort_dir = _onnxruntime_dir()
    info = _ort_build_info(ort_dir)
    provider = ort_dir / "capi" / f"{CUDA_PROVIDER_PREFIX}.so"
    if not provider.is_file() or not info.get("cuda_version"):
        raise SystemExit(f"build.py: {ort_dir} has no CUDA provider (pip install onnxruntime-gpu)")
    listed = {soname for soname, *_ in CUDA_LIBRARIES} | {CUDA_DRIVER}
    unlisted = [n for n in elf_needed(provider) if n not in listed and not _C_RUNTIME.search(n)]
    if unlisted:
        # onnxruntime was upgraded and links something new: the add-on must know to load it
        raise SystemExit(f"build.py: the CUDA provider needs {', '.join(unlisted)}, which "
                         "bundle_config.CUDA_LIBRARIES does not list")
    if dest.exists():
        shutil.rmtree(dest)
    package = dest / "onnxruntime"
    for path in sorted(ort_dir.rglob("*")):
        rel = path.relative_to(ort_dir).as_posix()
        if path.is_file() and not ADDON_ORT_SKIPPED.search(rel):
            target = package / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    # compiled now, so that the add-on's folder is never written to at run time
    compileall.compile_dir(str(package), quiet=1)
    libraries = []
    for soname, what, wheel, required in CUDA_LIBRARIES:
        entry = {"soname": soname, "what": what, "package": wheel, "required": required, "file": None}
        if with_runtime:
            found = _nvidia_library(soname)
            if found is None and required:
                raise SystemExit(f"build.py: --with-cuda-runtime: {soname} ({what}) is not installed here; "
                                 f"pip install {wheel} (the train extra brings it with torch)")
            if found is not None:
                (dest / "lib").mkdir(parents=True, exist_ok=True)
                shutil.copy2(found, dest / "lib" / soname)
                entry["file"] = f"lib/{soname}"
                # the libraries it loads by name from its own folder (cuDNN's parts, NVRTC's builtins)
                for companion in sorted(found.parent.iterdir()):
                    if CUDA_COMPANIONS.match(companion.name) and not (dest / "lib" / companion.name).exists():
                        shutil.copy2(companion, dest / "lib" / companion.name)
        libraries.append(entry)
    manifest = {
        "format": 1,
        "specula": read_version(),
        "onnxruntime": info.get("__version__", "?"),
        "cuda": info["cuda_version"],
        "python": f"cp{sys.version_info.major}{sys.version_info.minor}",
        "runtime_included": with_runtime,
        "libraries": libraries,
        "driver": CUDA_DRIVER,
    }
    (dest / ADDON_MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def _link_tree(src: Path, dst: Path) -> None:
    """A copy of ``src`` at ``dst`` made of hard links (a plain copy across file systems)."""
    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True, copy_function=link)


# ------------------------------------------------------------------ measuring
def bundle_size(folder: Path) -> tuple[int, int]:
    """(bytes of file contents, bytes of disk blocks used) under ``folder``; links counted once."""
    seen, apparent, on_disk = set(), 0, 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            apparent += st.st_size
            on_disk += getattr(st, "st_blocks", (st.st_size + 511) // 512) * 512
    return apparent, on_disk


def biggest(folder: Path, n: int = 8) -> list[tuple[int, str]]:
    sizes = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            p = Path(root) / name
            sizes.append((p.lstat().st_size, str(p.relative_to(folder))))
    return sorted(sizes, reverse=True)[:n]


def size_text(n: int) -> str:
    """Both units, since both are asked for: MiB (2**20) and decimal MB (10**6)."""
    return f"{n / 2**20:.0f} MiB = {n / 1e6:.0f} MB"


def check_size(folder: Path, limit: Optional[int]) -> Optional[str]:
    """Print the size and the largest files; return a failure line when above ``limit`` bytes."""
    apparent, on_disk = bundle_size(folder)
    say(f"    {folder}: {size_text(apparent)} of file contents ({on_disk / 2**20:.0f} MiB of disk blocks)")
    over = limit is not None and apparent > limit
    for size, name in biggest(folder, 20 if over else 8):
        say(f"    {size / 2**20:7.1f} MiB  {name}")
    if over:
        return (f"size: {size_text(apparent)} is above the limit of {size_text(limit)} "
                f"by {(apparent - limit) / 1e6:.1f} MB (largest files above)")
    if limit is not None:
        say(f"    within the limit of {size_text(limit)} ({(limit - apparent) / 1e6:.1f} MB to spare)")
    return None


def run_exe(exe: Path, args: list[str], env: dict, timeout: float = 600) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - t0


def start_time(exe: Path, env: dict, project: Path, runs: int = 3) -> tuple[list[float], list[float], str]:
    """(ms from launch to the window shown and painted, wall s until the process ended) per run."""
    shown, walls = [], []
    for i in range(runs + 1):  # the first run warms the disk cache and is not counted
        run_env = dict(env, SPECULA_STARTUP_PROBE="1", SPECULA_T0=f"{time.time():.6f}")
        code, out, wall = run_exe(exe, [str(project)], run_env, timeout=120)
        line = next((ln for ln in out.splitlines() if ln.startswith("startup_ms=")), None)
        if code != 0 or line is None:
            return [], [], f"the desktop's start-up probe did not report (exit {code}):\n{out[-2000:]}"
        if i:
            shown.append(float(line.split("=", 1)[1]))
            walls.append(wall)
    return shown, walls, ""


@contextlib.contextmanager
def xvfb_display() -> Iterator[tuple[Optional[str], str]]:
    """(DISPLAY of a fresh Xvfb server, or None, and why not); the server is stopped afterwards."""
    exe = shutil.which("Xvfb")
    if exe is None:
        yield None, "Xvfb not found (apt-get install xvfb)"
        return
    read_fd, write_fd = os.pipe()
    # -displayfd: Xvfb picks a free display and writes its number once it accepts clients
    proc = subprocess.Popen([exe, "-displayfd", str(write_fd), "-screen", "0", "1920x1080x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as fh:
            number = fh.readline().strip()
        if not number.isdigit():
            yield None, f"Xvfb did not start (exit {proc.poll()})"
        else:
            yield f":{number}", ""
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def gpu_present() -> bool:
    """Whether ``nvidia-smi -L`` lists a GPU (then the add-on's self-test must run on CUDA)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    proc = subprocess.run([smi, "-L"], capture_output=True, text=True)
    return proc.returncode == 0 and "GPU " in proc.stdout


def make_tiny_project(folder: Path) -> str:
    """The sample project with a few accepted masks drawn with annotation.Mask (for training)."""
    sys.path.insert(0, str(REPO))
    from annotation.document import Instance, InstanceState
    from annotation.mask import Mask
    from annotation.store import ProjectStore

    shutil.copytree(REPO / "assets" / "sample_project", folder,
                    ignore=shutil.ignore_patterns("__pycache__", "*.py", "specula.db*"))
    drawn = []
    with ProjectStore.open(folder) as store:
        for k, im in enumerate(store.images()):
            h, w = im.size
            mirror = Mask.from_polygon([(w * 0.2, h * 0.15), (w * 0.55, h * 0.15), (w * 0.55, h * 0.7), (w * 0.2, h * 0.7)], (h, w))
            glass = Mask.empty((h, w))
            glass.paint_stroke([(w * 0.65, h * 0.3), (w * 0.85, h * 0.6)], radius=max(6, w // 25))
            with store.transaction():
                for cls, m in (("mirror", mirror), ("glass", glass)):
                    store.add_instance(Instance(im.id, cls, m, InstanceState.ACCEPTED))
                    store.log("draw", image_id=im.id, class_name=cls, tool="selftest")
            drawn.append(f"{im.path}: mirror {mirror.area} px, glass {glass.area} px")
    return "; ".join(drawn)


# ------------------------------------------------------------------ the smoke tests
def smoke(kind: str, bundle: Path, args: argparse.Namespace, limit: Optional[int]) -> list[str]:
    """Run the smoke tests on the built ``bundle``; returns the names of those that failed."""
    exe = bundle / EXE_NAME
    failures: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix=f"specula-smoke-{kind}-"))
    env = smoke_env(tmp / "home")
    project = tmp / "start_project"
    shutil.copytree(REPO / "assets" / "sample_project", project,
                    ignore=shutil.ignore_patterns("__pycache__", "*.py", "specula.db*"))
    try:
        step("specula --version")
        code, text, wall = run_exe(exe, ["--version"], env)
        quote_output(text)
        say(f"    exit {code} in {wall:.2f} s")
        if code != 0:
            failures.append("--version")

        self_test = ["--self-test"]
        if kind == "cuda-addon" and gpu_present():
            self_test.append("--require-cuda")  # a GPU is here: the add-on must put inference on it
        step(f"specula {' '.join(self_test)} (offscreen)")
        code, text, wall = run_exe(exe, self_test, env)
        quote_output(text)
        say(f"    exit {code} in {wall:.1f} s")
        if code != 0:
            failures.append("self-test (offscreen)")

        if not args.skip_x11:
            step("X11: the xcb platform plugin's libraries (ldd), then the bundle on an Xvfb server")
            problems, from_system = x11_problems(bundle)
            say(f"    libqxcb.so takes from the machine: {', '.join(from_system)}")
            for problem in problems:
                say(f"    MISSING: {problem}")
            if problems:
                failures.append("X11 libraries")
            else:
                say("    every other library it links or loads is in the bundle")
            others = unresolved_in_bundle(bundle)
            for rel, missing in others.items():
                say(f"    note: {rel} cannot find {', '.join(missing)} (that plugin cannot load here)")
            with xvfb_display() as (display, why):
                if display is None:
                    say(f"    FAILED: {why} (or pass --skip-x11)")
                    failures.append("Xvfb")
                else:
                    x_env = dict(env, DISPLAY=display, QT_QPA_PLATFORM="xcb")
                    code, text, wall = run_exe(exe, [*self_test, "--platform", "xcb"], x_env)
                    quote_output(text)
                    say(f"    self-test on Xvfb {display}: exit {code} in {wall:.1f} s")
                    if code != 0:
                        failures.append("self-test (Xvfb)")
                    shown, _walls, problem = start_time(exe, x_env, project, runs=1)
                    if shown:
                        say(f"    launch -> main window shown and painted on Xvfb: {shown[0]:.0f} ms (one run after a warm-up)")
                    else:
                        failures.append("start (Xvfb)")
                        say(f"    FAILED: {problem}")

        step("size on disk")
        if kind == "cuda-addon":
            addon = bundle / ADDON_DIR
            apparent, _ = bundle_size(addon)
            say(f"    the add-on alone, {addon}: {size_text(apparent)}")
            for size, name in biggest(addon, 6):
                say(f"    {size / 2**20:7.1f} MiB  {name}")
            say("    the field bundle with the add-on in place:")
        problem = check_size(bundle, limit)
        if problem:
            say(f"    FAILED: {problem}")
            failures.append("size")

        step("start time to a usable window (offscreen, sample project)")
        shown, walls, problem = start_time(exe, env, project, runs=args.runs)
        if shown:
            say(f"    launch -> main window shown and painted: median {statistics.median(shown):.0f} ms "
                f"(runs: {', '.join(f'{t:.0f}' for t in shown)} ms; whole process incl. exit: "
                f"{', '.join(f'{t * 1000:.0f}' for t in walls)} ms)")
        else:
            failures.append("start time")
            say(f"    FAILED: {problem}")
            code, _, wall = run_exe(exe, ["--version"], env)
            say(f"    fallback: `specula --version` takes {wall * 1000:.0f} ms (no window)")

        if kind == "workstation":
            step(f"specula train <tiny project> --task semantic --epochs {args.epochs}")
            train_project = tmp / "train_project"
            say(f"    tiny project {train_project}: {make_tiny_project(train_project)}")
            code, text, wall = run_exe(exe, ["train", str(train_project), "--task", "semantic", "--epochs",
                                             str(args.epochs)], env, timeout=1800)
            quote_output(text, limit=80)
            say(f"    exit {code} in {wall:.0f} s")
            if code != 0:
                failures.append("train")
            step("specula --version after training (the new model is listed)")
            code, text, _ = run_exe(exe, ["--version"], env)
            quote_output(text)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=BUILD_KINDS)
    ap.add_argument("--skip-build", action="store_true", help="smoke-test what is already in --out")
    ap.add_argument("--out", type=Path, help="dist folder (default: dist/<kind>, dist/field-cuda for the add-on); "
                                             "the bundle is <out>/specula/")
    ap.add_argument("--field", type=Path, help="cuda-addon: the field bundle's dist folder (default: dist/field)")
    ap.add_argument("--with-cuda-runtime", action="store_true",
                    help="cuda-addon: also carry the CUDA 13 and cuDNN 9 libraries (about 2 GB) from this "
                         "Python's nvidia-* wheels, so the target needs only the NVIDIA driver")
    ap.add_argument("--max-mb", type=float, default=None,
                    help=f"fail above this many decimal MB (default: {FIELD_MAX_BYTES / 1e6:.0f} for field, none otherwise)")
    ap.add_argument("--skip-x11", action="store_true", help="leave out the X11 checks (no Xvfb on this machine)")
    ap.add_argument("--runs", type=int, default=3, help="timed start-up runs (after one warm-up)")
    ap.add_argument("--epochs", type=int, default=1, help="workstation smoke training epochs")
    args = ap.parse_args(argv)
    default_out = {"cuda-addon": REPO / "dist" / "field-cuda"}.get(args.kind, REPO / "dist" / args.kind)
    out = (args.out or default_out).resolve()
    bundle = out / "specula"
    limit = int(args.max_mb * 1e6) if args.max_mb else (FIELD_MAX_BYTES if args.kind == "field" else None)
    say(f"Specula {read_version()}: {args.kind}{' (with the CUDA runtime)' if args.with_cuda_runtime else ''}")
    if args.kind == "cuda-addon":
        field = (args.field or REPO / "dist" / "field").resolve() / "specula"
        if not args.skip_build:
            if not (field / EXE_NAME).is_file():
                raise SystemExit(f"build.py: no field bundle at {field}; build it first (build.py field)")
            step(f"CUDA add-on -> {bundle / ADDON_DIR} (beside a hard-linked copy of {field})")
            t0 = time.perf_counter()
            _link_tree(field, bundle)
            manifest = build_cuda_addon(bundle / ADDON_DIR, args.with_cuda_runtime)
            say(f"    onnxruntime {manifest['onnxruntime']} for CUDA {manifest['cuda']}, {manifest['python']}; "
                f"CUDA libraries {'carried in lib/' if manifest['runtime_included'] else 'from the target machine'}"
                f" ({time.perf_counter() - t0:.0f} s)")
    elif not args.skip_build:
        run_pyinstaller(args.kind, out)
    if not (bundle / EXE_NAME).is_file():
        raise SystemExit(f"build.py: no executable at {bundle / EXE_NAME}; build first (without --skip-build)")
    failures = smoke(args.kind, bundle, args, limit)
    step("result")
    if failures:
        say(f"    FAILED: {', '.join(failures)}")
        return 1
    say(f"    {args.kind} OK: {bundle}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
