"""Runs fuzzed annotation files through `specula import` and checks what every run promises.

Each input is imported into a fresh copy of a small real project (photos from
``../shared/data``, made a project once; a copy is the database reset to that state) by
``specula.cli.main`` in a child forked from a parent that has already imported Specula,
so an input costs a fork, not an interpreter start. The child has a 4 GiB address-space
limit, so a runaway allocation ends as a MemoryError (a traceback) rather than taking the
machine, and a crash shows as a signal.

Checked for every input:
- the exit code is 0, 1 or 2; 2 comes with exactly one line on stderr, ``specula: ...``;
  0 and 1 with only ``warning:`` lines (and ``specula:`` for 1) there;
- no Python traceback, no signal, no hang (a wall-clock limit per input);
- after an import that failed (exit 2, a traceback, a signal, a hang) the database holds
  exactly what it held before (a digest of every table);
- no silent garbage: an input that imported is imported again into another fresh copy,
  with malloc's fill byte changed and the heap stirred (``mallopt(M_PERTURB)``), and must
  give the same rows, masks byte for byte.
"""
from __future__ import annotations

import ctypes
import hashlib
import io
import json
import os
import random
import re
import resource
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from fuzz_mutators import FuzzInput, Mutator, Seed

IMPORTERS = ("coco", "labelme", "cvat", "color-masks", "instance-masks", "class-masks")
MEMORY_LIMIT = 4 << 30
INPUT_TIMEOUT_S = 60.0
# columns that hold the time of the run, not the input's content
_TIME_COLUMNS = {"created", "modified", "started", "ended", "since"}


def data_root() -> Path:
    return Path(os.environ.get("SPECULA_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


# ------------------------------------------------------------------ the project and the seeds
# project images: (data set path, folder in the project). Small photos whose names the
# seed files use, so that labels land; GDD and CFD photos for the mask formats.
_PROJECT_IMAGES = [
    ("formats/labelme-examples/instance_segmentation/data_annotated/2011_000003.jpg", "labelme"),
    ("formats/labelme-examples/instance_segmentation/data_annotated/2011_000006.jpg", "labelme"),
    ("formats/labelme-examples/instance_segmentation/data_annotated/2011_000025.jpg", "labelme"),
    ("formats/labelme-examples/primitives/primitives.jpg", "labelme"),
    ("formats/labelme-examples/classification/data_annotated/0001.jpg", "labelme"),
    ("formats/labelme-examples/video_annotation/data_annotated/00000100.jpg", "labelme"),
    ("formats/datumaro/coco_dataset/coco_instances/images/train/a.jpg", "coco"),
    ("formats/datumaro/coco_dataset/coco_instances/images/val/b.jpg", "coco"),
    ("formats/datumaro/cvat_dataset/for_images/images/img0.jpg", "cvat"),
    ("formats/datumaro/cvat_dataset/for_images/images/img1.jpg", "cvat"),
    ("formats/datumaro/cvat_dataset/for_video/images/frame_000010.png", "cvat"),
    ("formats/datumaro/cvat_dataset/for_video/images/frame_000013.png", "cvat"),
    ("formats/pycococreator/example_data/images/100.jpg", "pcc"),
    ("formats/pycococreator/examples/shapes/train/shapes_train2018/1000.jpeg", "pcc"),
    ("formats/pycococreator/examples/shapes/train/shapes_train2018/1001.jpeg", "pcc"),
    ("formats/sahi-coco/terrain2.png", "sahi"),
    ("glass-gdd/image/1.jpg", "gdd"),
    ("glass-gdd/image/1000.jpg", "gdd"),
    ("cracks-cfd/image/001.jpg", "cfd"),
]

# (importer, data set path, extra arguments[, weight])
_SEED_FILES: list[tuple] = [
    ("coco", "formats/datumaro/coco_dataset/coco_instances/annotations/instances_train.json", ()),
    ("coco", "formats/datumaro/coco_dataset/coco_instances/annotations/instances_val.json", ()),
    ("coco", "formats/pycococreator/example_data/annotations/coco_example.json", ()),
    ("coco", "formats/labelme-examples/instance_segmentation/data_dataset_coco/annotations.json", ()),
    ("coco", "formats/sahi-coco/terrain2_coco.json", ()),
    ("labelme", "formats/labelme-examples/instance_segmentation/data_annotated/2011_000003.json", ()),
    ("labelme", "formats/labelme-examples/instance_segmentation/data_annotated/2011_000025.json", ()),
    ("labelme", "formats/labelme-examples/primitives/primitives.json", ()),
    ("labelme", "formats/labelme-examples/classification/data_annotated/0001.json", ()),
    ("labelme", "formats/labelme-examples/video_annotation/data_annotated/00000100.json", ()),
    ("labelme", "formats/sahi-coco/terrain2.json", ()),
    ("cvat", "formats/datumaro/cvat_dataset/for_images/train.xml", ()),
    # CVAT for video is refused as a whole; a few inputs check that the refusal holds
    ("cvat", "formats/datumaro/cvat_dataset/for_video/annotations.xml", (), 0.2),
    ("instance-masks", "formats/pycococreator/example_data/annotations/100_1.png", ()),
    ("instance-masks", "formats/pycococreator/example_data/annotations/100_crowd_1.png", ()),
    ("instance-masks", "formats/pycococreator/examples/shapes/train/annotations/1001_circle_0.png", ()),
    ("instance-masks", "formats/pycococreator/examples/shapes/train/annotations/1000_square_0.png", ()),
    ("class-masks", "glass-gdd/mask/1.png", ("--class", "glass")),
    ("class-masks", "glass-gdd/mask/1000.png", ("--class", "glass")),
    ("class-masks", "cracks-cfd/mask/001.png", ("--class", "crack")),
    ("color-masks", "formats/labelme-examples/instance_segmentation/data_dataset_voc/SegmentationClass/2011_000003.png",
     ()),
]


def _color_seeds(root: Path) -> list[Seed]:
    """Colour masks in the project palette's colours, made from real GDD ground truth:
    glass red, and for the second photo a mirror (green) holding glass-in-mirror (blue)."""
    import numpy as np
    from PIL import Image

    from annotation.palette import DEFAULT_PALETTE, builtin_palette

    colours = {c.name: c.color for c in builtin_palette(DEFAULT_PALETTE).classes}
    out = []
    for stem in ("1", "1000"):
        binary = np.asarray(Image.open(root / "glass-gdd" / "mask" / f"{stem}.png").convert("L")) >= 128
        rgb = np.zeros(binary.shape + (3,), np.uint8)
        if stem == "1":
            rgb[binary] = colours["glass"]
        else:
            rgb[binary] = colours["mirror"]
            inner = np.zeros_like(binary)
            ys, xs = np.nonzero(binary)
            if len(ys):
                cy, cx = int(np.median(ys)), int(np.median(xs))
                inner[max(0, cy - 20): cy + 20, max(0, cx - 20): cx + 20] = True
            rgb[inner & binary] = colours["glass-in-mirror"]
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        out.append(Seed("color-masks", f"glass-gdd/mask/{stem}.png (coloured)", f"{stem}.png", buf.getvalue()))
    return out


def load_seeds(root: Path) -> list[Seed]:
    seeds = [Seed(imp, rel, Path(rel).name, (root / rel).read_bytes(), tuple(extra), *weight)
             for imp, rel, extra, *weight in _SEED_FILES if (root / rel).is_file()]
    return seeds + _color_seeds(root)


def missing_data(root: Path) -> list[str]:
    """The data set files the fuzz test needs that are not there."""
    need = [p for p, _ in _PROJECT_IMAGES] + [entry[1] for entry in _SEED_FILES] + ["glass-gdd/mask/1000.png"]
    return [p for p in need if not (root / p).is_file()]


def make_project(root: Path, folder: Path) -> bytes:
    """Copy the photos into ``folder``, make it a project; returns the database's bytes."""
    from annotation.store import DB_NAME, ProjectStore

    for rel, sub in _PROJECT_IMAGES:
        dst = folder / sub / Path(rel).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, dst)
    with ProjectStore.open(folder) as store:
        bad = [im.path for im in store.images() if im.error]
        if bad:
            raise RuntimeError(f"fuzz project photos unreadable: {bad}")
    # the last connection closed: the WAL is checkpointed into the main file
    for extra in ("-wal", "-shm"):
        Path(str(folder / DB_NAME) + extra).unlink(missing_ok=True)
    return (folder / DB_NAME).read_bytes()


# ------------------------------------------------------------------ one run
@dataclass
class Outcome:
    code: Optional[int]  # exit status, None when killed by a signal or the time limit
    signal: Optional[int]
    timed_out: bool
    stdout: str
    stderr: str
    seconds: float


def _reset(project: Path, template: bytes) -> None:
    from annotation.store import DB_NAME

    db = project / DB_NAME
    for extra in ("-wal", "-shm"):
        Path(str(db) + extra).unlink(missing_ok=True)
    db.write_bytes(template)


def _stir_heap(perturb: int) -> None:
    """Make memory that an importer forgets to initialise differ between the two runs."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-6, perturb)  # M_PERTURB: malloc fills fresh blocks with ~perturb, freed ones with perturb
    except (OSError, AttributeError):
        pass
    import numpy as np

    rng = random.Random(perturb)
    junk = [np.full(rng.randrange(1, 70_000), perturb, np.uint8) for _ in range(300)]
    del junk


def run_child(argv: list[str], workdir: Path, perturb: int, timeout: float = INPUT_TIMEOUT_S) -> Outcome:
    """``specula.cli.main(argv)`` in a forked child; its output, exit code or signal."""
    out_path, err_path = workdir / "stdout", workdir / "stderr"
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
            out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            err_fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out_fd, 1)
            os.dup2(err_fd, 2)
            _stir_heap(perturb)
            from specula.cli import main

            try:
                code = main(argv)
            except SystemExit as stop:  # what the interpreter would do with it
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
                if not isinstance(stop.code, (int, type(None))):
                    print(stop.code, file=sys.stderr)
            except BaseException:  # noqa: BLE001 - printed as the interpreter prints it
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            try:
                traceback.print_exc()
                sys.stderr.flush()
            except BaseException:  # noqa: BLE001
                pass
        finally:
            os._exit(code if isinstance(code, int) and 0 <= code < 256 else 1)
    deadline = started + timeout
    status = None
    timed_out = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            timed_out = True
            break
        time.sleep(0.002)
    seconds = time.monotonic() - started
    read = lambda p: p.read_bytes().decode("utf-8", "replace") if p.exists() else ""  # noqa: E731
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) and not timed_out else None
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    return Outcome(code, sig, timed_out, read(out_path), read(err_path), seconds)


# ------------------------------------------------------------------ what the database holds
def db_digest(project: Path) -> str:
    """Every row of every table (the interaction log and timestamps included)."""
    return hashlib.sha256(repr(_rows(project, keep_times=True)).encode()).hexdigest()


def db_content(project: Path) -> Any:
    """What an import put in: every row, without the columns that hold the time of the run."""
    return _rows(project, keep_times=False)


def _rows(project: Path, keep_times: bool) -> list:
    from annotation.store import DB_NAME

    db = sqlite3.connect(f"{(project / DB_NAME).as_uri()}?mode=ro", uri=True)
    try:
        out: list = [db.execute("PRAGMA user_version").fetchone()]
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        for t in tables:
            cur = db.execute(f'SELECT * FROM "{t}" ORDER BY rowid')
            names = [d[0] for d in cur.description]
            keep = [i for i, n in enumerate(names) if keep_times or n not in _TIME_COLUMNS]
            out.append((t, [tuple(row[i] for i in keep) for row in cur]))
        return out
    finally:
        db.close()


# ------------------------------------------------------------------ checks
TRACEBACK = "Traceback (most recent call last)"


def stderr_problem(outcome: Outcome) -> Optional[str]:
    """What is wrong with stderr for this exit code, or None."""
    lines = outcome.stderr.splitlines()
    if outcome.code == 2:
        if len(lines) != 1 or not lines[0].startswith("specula: "):
            return f"exit 2 with {len(lines)} stderr lines: {outcome.stderr[:200]!r}"
        return None
    if outcome.code in (0, 1):
        allowed = ("warning: ", "... and ") + (("specula: ",) if outcome.code == 1 else ())
        bad = [ln for ln in lines if not ln.startswith(allowed)]
        if bad:
            return f"exit {outcome.code} with an unexpected stderr line: {bad[0][:200]!r}"
    return None


def traceback_summary(stderr: str) -> str:
    """'ExcType: message' and the innermost Specula frame of a traceback."""
    lines = stderr.splitlines()
    start = max(i for i, ln in enumerate(lines) if ln.startswith(TRACEBACK))
    tb = lines[start:]
    last = next((ln for ln in reversed(tb) if ln and not ln.startswith(" ")), tb[-1])
    frames = [ln.strip() for ln in tb if ln.strip().startswith("File ")]
    ours = [f for f in frames if "/.venv/" not in f and "/lib/python" not in f]
    where = (ours or frames or [""])[-1]
    where = where.replace(str(Path(__file__).resolve().parents[2]) + "/", "")
    return f"{last[:160]} [{where[:160]}]"


@dataclass
class Finding:
    importer: str
    kind: str
    category: str  # traceback, signal, hang, bad-stderr, bad-exit, db-changed, silent-garbage
    detail: str
    seed: str
    notes: list[str]
    index: int


@dataclass
class Summary:
    inputs: int = 0
    seconds: float = 0.0
    per_importer: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    per_kind: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # "importer/kind" -> exits
    findings: list[Finding] = field(default_factory=list)
    slowest: list[tuple[float, str]] = field(default_factory=list)  # (seconds, "importer/kind seed")
    refusals: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # importer -> exit-2 lines

    COLUMNS = ("inputs", "exit 0", "exit 1", "exit 2", "tracebacks", "signals", "hangs", "bad stderr",
               "silent garbage", "DB changed")

    def add(self, importer: str, column: str) -> None:
        self.per_importer[importer][column] += 1

    def failures(self) -> int:
        return len(self.findings)

    def table(self) -> str:
        rows = [("importer",) + self.COLUMNS]
        total: Counter = Counter()
        for imp in IMPORTERS:
            c = self.per_importer.get(imp, Counter())
            total.update(c)
            rows.append((imp,) + tuple(str(c[k]) for k in self.COLUMNS))
        rows.append(("all",) + tuple(str(total[k]) for k in self.COLUMNS))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths)))
                         for r in rows)

    def distinct(self) -> list[tuple[str, str, str, str, int]]:
        """(importer, category, detail, kinds, count) per distinct problem, most frequent first."""
        groups: dict[tuple[str, str, str], list[Finding]] = defaultdict(list)
        for f in self.findings:
            groups[(f.importer, f.category, _generic(f.detail))].append(f)
        out = [(imp, cat, detail, ", ".join(sorted({f.kind for f in fs})), len(fs))
               for (imp, cat, detail), fs in groups.items()]
        return sorted(out, key=lambda r: (r[0], -r[4]))

    def to_json(self) -> dict:
        return {
            "inputs": self.inputs, "seconds": round(self.seconds, 1),
            "per_importer": {k: dict(v) for k, v in self.per_importer.items()},
            "per_kind": {k: dict(v) for k, v in sorted(self.per_kind.items())},
            "slowest": sorted(self.slowest, reverse=True)[:20],
            "refusals": {k: dict(v.most_common(40)) for k, v in self.refusals.items()},
            "distinct": [dict(zip(("importer", "category", "detail", "kinds", "count"), r)) for r in self.distinct()],
            "findings": [f.__dict__ for f in self.findings[:500]],
        }


def _generic(detail: str) -> str:
    """A finding's detail without what varies between inputs of one fault (positions, characters)."""
    detail = re.sub(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})", r"\\?", detail)
    detail = re.sub(r"(?<![\w.])\d+(?![\w.])", "N", detail)
    return detail.replace("characters in position N-N", "character in position N").replace(
        "character '\\?' in", "character in")


def _write_input(fi: FuzzInput, workdir: Path) -> Path:
    """Lay the input out as the importer expects it to lie (an annotation folder, a mask folder)."""
    base = workdir / "in"
    shutil.rmtree(base, ignore_errors=True)
    sub = {"coco": "annotations", "labelme": "labelme", "cvat": "cvat"}.get(fi.importer, "masks")
    folder = base / sub
    folder.mkdir(parents=True)
    path = folder / fi.name.replace("/", "_").replace("\x00", "_")
    if not path.name.strip("."):
        path = folder / "input"
    path.write_bytes(fi.data)
    return path


def check_one(fi: FuzzInput, index: int, project: Path, template: bytes, template_digest: str, workdir: Path,
              summary: Summary, timeout: float = INPUT_TIMEOUT_S) -> None:
    path = _write_input(fi, workdir)
    argv = ["import", str(project), "--from", fi.importer, str(path), *fi.extra_args]
    _reset(project, template)
    first = run_child(argv, workdir, perturb=0x5A, timeout=timeout)
    summary.inputs += 1
    summary.add(fi.importer, "inputs")
    outcome = ("signal" if first.signal else "hang" if first.timed_out else
               "traceback" if TRACEBACK in first.stderr else f"exit {first.code}")
    summary.per_kind[f"{fi.importer}/{fi.kind}"][outcome] += 1
    summary.slowest.append((round(first.seconds, 2), f"{fi.importer}/{fi.kind} {fi.seed} {' '.join(fi.notes)[:60]}"))
    summary.slowest = sorted(summary.slowest, reverse=True)[:20]
    if first.code == 2 and first.stderr:
        line = first.stderr.splitlines()[0].replace(str(workdir), "W")
        summary.refusals[fi.importer][_generic(line)[:200]] += 1

    def finding(category: str, detail: str) -> None:
        summary.add(fi.importer, {"traceback": "tracebacks", "signal": "signals", "hang": "hangs",
                                  "bad-stderr": "bad stderr", "bad-exit": "bad stderr",
                                  "silent-garbage": "silent garbage", "db-changed": "DB changed"}[category])
        summary.findings.append(Finding(fi.importer, fi.kind, category, detail, fi.seed, fi.notes, index))

    if first.timed_out:
        finding("hang", f"no answer in {timeout:.0f} s")
    elif first.signal is not None:
        finding("signal", signal.Signals(first.signal).name)
    elif TRACEBACK in first.stderr:
        finding("traceback", traceback_summary(first.stderr))
    elif first.code not in (0, 1, 2):
        finding("bad-exit", f"exit {first.code}: {first.stderr[-200:]!r}")
    else:
        summary.add(fi.importer, f"exit {first.code}")
        problem = stderr_problem(first)
        if problem:
            finding("bad-stderr", problem)
    failed = first.timed_out or first.signal is not None or TRACEBACK in first.stderr or first.code not in (0, 1)
    if failed:  # refused, crashed or hung: the project must be as it was
        if db_digest(project) != template_digest:
            finding("db-changed", f"after exit {first.code}/signal {first.signal}")
        return
    content = db_content(project)
    _reset(project, template)
    second = run_child(argv, workdir, perturb=0xA7, timeout=timeout)
    if second.code != first.code or db_content(project) != content:
        finding("silent-garbage", f"second import: exit {second.code}, rows differ: "
                                  f"{_first_difference(content, db_content(project))}")


def _first_difference(a: Any, b: Any) -> str:
    for (ta, ra), (_, rb) in zip(a[1:], b[1:]):
        if ra != rb:
            for x, y in zip(ra, rb):
                if x != y:
                    return f"table {ta}: {str(x)[:120]} vs {str(y)[:120]}"
            return f"table {ta}: {len(ra)} rows vs {len(rb)}"
    return "exit codes differ"


# ------------------------------------------------------------------ the run
def warm_up() -> None:
    """Import what every child needs, once, in the parent."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import annotation.formats.project_io  # noqa: F401
    import cv2
    import defusedxml.ElementTree  # noqa: F401
    import pycocotools.mask  # noqa: F401
    import tqdm  # noqa: F401
    from PIL import Image

    import specula.cli
    import specula.project_cli  # noqa: F401

    cv2.setNumThreads(1)
    Image.init()
    specula.cli.build_parser()


def run(inputs: int, seed: int = 0, importers: tuple[str, ...] = IMPORTERS, timeout: float = INPUT_TIMEOUT_S,
        progress: bool = False, data: Optional[Path] = None, checkpoint: Optional[Path] = None) -> Summary:
    """Fuzz ``inputs`` inputs, spread evenly over ``importers``; returns the summary.

    ``checkpoint``: where the summary so far is written every 500 inputs (a long run
    can be read, or stopped, before it ends)."""
    data = data or data_root()
    warm_up()
    summary = Summary()
    mutator = Mutator(load_seeds(data), seed)
    with tempfile.TemporaryDirectory(prefix="specula-fuzz-") as tmp:
        work = Path(tmp)
        project = work / "project"
        project.mkdir()
        template = make_project(data, project)
        template_digest = db_digest(project)
        started = time.monotonic()
        for k in range(inputs):
            importer = importers[k % len(importers)]
            fi = mutator.make(importer)
            check_one(fi, k, project, template, template_digest, work, summary, timeout)
            if checkpoint is not None and (k + 1) % 500 == 0:
                summary.seconds = time.monotonic() - started
                dump(summary, checkpoint)
            if progress and (k + 1) % 50 == 0:
                rate = (k + 1) / (time.monotonic() - started)
                print(f"  {k + 1}/{inputs} inputs, {rate:.1f}/s, {summary.failures()} findings", file=sys.stderr,
                      flush=True)
        summary.seconds = time.monotonic() - started
    return summary


def report(summary: Summary) -> str:
    lines = [f"{summary.inputs} inputs in {summary.seconds:.0f} s "
             f"({summary.inputs / max(summary.seconds, 1e-9):.1f} inputs/s)", "", summary.table()]
    distinct = summary.distinct()
    if distinct:
        lines += ["", "distinct problems (importer, what, input kinds, count):"]
        lines += [f"  {imp}: {cat}: {detail} <- {kinds} (x{n})" for imp, cat, detail, kinds, n in distinct]
    return "\n".join(lines)


def dump(summary: Summary, path: Path) -> None:
    path.write_text(json.dumps(summary.to_json(), indent=1, default=str))
