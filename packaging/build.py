"""Build a Specula bundle with PyInstaller, then smoke-test the executable that was built.

    python packaging/build.py field|workstation [--skip-build] [--out DIR] [--cpu-only]

Steps: PyInstaller on ``packaging/<kind>.spec`` (one folder: ``<out>/specula/``), then
against the BUILT executable, never the source:

  1. ``specula --version``                    prints the version and the shipped models
  2. ``specula --self-test`` (offscreen)      must exit 0
  3. size of the bundle on disk
  4. start time to a usable window: with ``SPECULA_STARTUP_PROBE=1`` the desktop opens the
     main window (offscreen, on a copy of the sample project), prints ``startup_ms=<ms>``
     once it is shown and painted, and exits (desktop.app); ``SPECULA_T0`` passes the
     launch time, so the figure includes the bootloader and all imports (median of 3 runs
     after one warm-up run)
  5. workstation only: ``specula train <tiny project> --task semantic --epochs 1`` (its
     JSON lines are shown)

Exits 1 when the build or a smoke test fails.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bundle_config import KINDS, REPO, read_version  # noqa: E402

EXE_NAME = "specula.exe" if os.name == "nt" else "specula"


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
    return env


def run_pyinstaller(kind: str, out: Path, cpu_only: bool) -> None:
    step(f"PyInstaller: {kind} bundle -> {out / 'specula'}")
    env = dict(os.environ)
    if cpu_only:
        env["SPECULA_BUNDLE_CPU_ONLY"] = "1"
    cmd = [
        sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
        "--distpath", str(out), "--workpath", str(REPO / "build" / kind), str(HERE / f"{kind}.spec"),
    ]
    say("    " + " ".join(cmd))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"build.py: PyInstaller failed (exit {proc.returncode}); see its output above")
    say(f"    built in {time.perf_counter() - t0:.0f} s")


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("--skip-build", action="store_true", help="smoke-test the bundle already in --out")
    ap.add_argument("--out", type=Path, help="dist folder (default: dist/<kind>); the bundle is <out>/specula/")
    ap.add_argument("--cpu-only", action="store_true",
                    help="leave out onnxruntime's CUDA provider (271 MB): a smaller bundle that never uses a GPU")
    ap.add_argument("--epochs", type=int, default=1, help="workstation smoke training epochs")
    args = ap.parse_args(argv)
    out = (args.out or REPO / "dist" / args.kind).resolve()
    say(f"Specula {read_version()}: {args.kind} bundle{' (CPU only)' if args.cpu_only else ''}")
    if not args.skip_build:
        run_pyinstaller(args.kind, out, args.cpu_only)
    bundle = out / "specula"
    exe = bundle / EXE_NAME
    if not exe.is_file():
        raise SystemExit(f"build.py: no executable at {exe}; build first (without --skip-build)")
    failures: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix=f"specula-smoke-{args.kind}-"))
    env = smoke_env(tmp / "home")
    try:
        step("specula --version")
        code, text, wall = run_exe(exe, ["--version"], env)
        quote_output(text)
        say(f"    exit {code} in {wall:.2f} s")
        if code != 0:
            failures.append("--version")

        step("specula --self-test (offscreen)")
        code, text, wall = run_exe(exe, ["--self-test"], env)
        quote_output(text)
        say(f"    exit {code} in {wall:.1f} s")
        if code != 0:
            failures.append("--self-test")

        step("size on disk")
        apparent, on_disk = bundle_size(bundle)
        say(f"    {bundle}: {on_disk / 2**20:.0f} MiB on disk ({apparent / 2**20:.0f} MiB of file contents)")
        for size, name in biggest(bundle):
            say(f"    {size / 2**20:7.1f} MiB  {name}")

        step("start time to a usable window (offscreen, sample project)")
        project = tmp / "start_project"
        shutil.copytree(REPO / "assets" / "sample_project", project,
                        ignore=shutil.ignore_patterns("__pycache__", "*.py", "specula.db*"))
        shown, walls, problem = start_time(exe, env, project)
        if shown:
            say(f"    launch -> main window shown and painted: median {statistics.median(shown):.0f} ms "
                f"(runs: {', '.join(f'{t:.0f}' for t in shown)} ms; whole process incl. exit: "
                f"{', '.join(f'{t * 1000:.0f}' for t in walls)} ms)")
        else:
            failures.append("start time")
            say(f"    FAILED: {problem}")
            code, _, wall = run_exe(exe, ["--version"], env)
            say(f"    fallback: `specula --version` takes {wall * 1000:.0f} ms (no window)")

        if args.kind == "workstation":
            step(f"specula train <tiny project> --task semantic --epochs {args.epochs}")
            project = tmp / "train_project"
            say(f"    tiny project {project}: {make_tiny_project(project)}")
            code, text, wall = run_exe(exe, ["train", str(project), "--task", "semantic", "--epochs", str(args.epochs)], env, timeout=1800)
            quote_output(text, limit=80)
            say(f"    exit {code} in {wall:.0f} s")
            if code != 0:
                failures.append("train")
            step("specula --version after training (the new model is listed)")
            code, text, _ = run_exe(exe, ["--version"], env)
            quote_output(text)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    step("result")
    if failures:
        say(f"    FAILED: {', '.join(failures)}")
        return 1
    say(f"    {args.kind} bundle OK: {bundle}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
