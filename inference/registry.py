"""The model registry: a folder per model version, a manifest beside the weights.

Layout (``root`` is ``user_data_dir()/models`` by default)::

    <root>/<name>/<version>/manifest.json
    <root>/<name>/<version>/model.onnx        semantic, instance (and cam/semantic via ONNX)
    <root>/<name>/<version>/model.pt          TorchScript, for pipelines that need gradients (cam)
    <root>/<name>/<version>/encoder.onnx      prompt (SAM-family image encoder)
    <root>/<name>/<version>/decoder.onnx      prompt (SAM-family mask decoder)
    <root>/active.json                        which version of each model is in use

Publishing writes the version under ``<name>/.tmp-<uuid>`` and renames it into place, so a
reader (the engine, another process) never sees half a model. Read-only shipped models in
``assets/models`` are merged into the listing; a user version with the same name and version
hides the shipped one. Nothing here imports onnxruntime or torch.

Trust: TorchScript (``model.pt``) runs its own code when loaded, so a ``model.pt`` is
loaded only when this registry recorded its SHA-256 in the manifest and signed that record
with its own key (``<root>/.trust-key``): ``publish`` does so for the trainer's files, and
``import_model`` refuses TorchScript from outside unless told to trust it. A plain pickle or
``torch.save`` archive named ``model.pt`` is never imported. Shipped models are trusted as
part of the installation.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

from annotation.files import atomic_write_bytes

if TYPE_CHECKING:  # only for the type hint; the registry reads a palette's name and classes
    from annotation.palette import Palette

MANIFEST = "manifest.json"
ACTIVE_FILE = "active.json"
TASKS = ("semantic", "cam", "instance", "prompt", "clicks", "irnet")
# the tasks whose models propose instances for a whole image (prompt models answer clicks)
PROPOSING_TASKS = ("semantic", "cam", "instance", "irnet")
ACTIVATIONS = ("softmax", "sigmoid", "none")
# weight files each task can run from; a version needs one of the alternatives
REQUIRED_FILES: dict[str, tuple[tuple[str, ...], ...]] = {
    "semantic": (("model.onnx",), ("model.pt",)),
    "cam": (("model.pt",),),
    "irnet": (("model.onnx",),),  # IRNet (002): CAM network and both branches in one graph
    "instance": (("model.onnx",),),
    "prompt": (("encoder.onnx", "decoder.onnx"),),
    # click refinement (inference.pipelines.clicks): one network run per click, or an image
    # encoder run once per crop plus a light head per click
    "clicks": (("model.onnx",), ("encoder.onnx", "decoder.onnx")),
}
WEIGHT_FILES = ("model.onnx", "model.pt", "encoder.onnx", "decoder.onnx", "weights.pt")
TORCHSCRIPT_FILES = ("model.pt",)  # loaded with torch.jit.load, which runs the archive's code
TRUST_KEY = ".trust-key"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class ModelError(Exception):
    """A model that cannot be listed, published or loaded; the message names the file and the fault."""


def version_key(version: str) -> tuple:
    """Natural sort key: ``"2" < "10"``, ``"v2" < "v10"``, dates sort as written."""
    parts = re.split(r"(\d+)", version)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p != "")


@dataclass(frozen=True)
class Manifest:
    """What a model version is and how to feed it (``manifest.json``).

    ``input_size`` is ``(height, width)`` or ``None`` when the model accepts any size.
    ``mean``/``std`` apply to RGB scaled to [0, 1]: ``x = (rgb / 255 - mean) / std``.
    ``tile``/``overlap`` are pixels; ``tile=None`` means whole images.
    ``output_activation`` says what turns the model's raw output into probabilities.
    ``background_class``, when set, is a class in ``classes`` that yields no proposals.
    ``defaults`` are the pipeline's parameter defaults (thresholds, iterations, ...).
    """

    name: str
    version: str
    task: str
    classes: tuple[str, ...] = ()
    input_size: Optional[tuple[int, int]] = None
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    tile: Optional[int] = None
    overlap: int = 128
    output_activation: str = "none"
    background_class: Optional[str] = None
    feature_layer: Optional[str] = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    created: str = ""
    # file name -> SHA-256 of the files as published, and the registry's signature of that
    # record (see the module note); both written by ``Registry.publish``, never taken from outside
    sha256: Mapping[str, str] = field(default_factory=dict)
    signature: str = ""

    # ---------------------------------------------------------------- (de)serialise
    def to_json(self) -> dict[str, Any]:
        out = {
            "format": 1,
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "classes": list(self.classes),
            "input_size": list(self.input_size) if self.input_size else None,
            "normalization": {"mean": list(self.mean), "std": list(self.std)},
            "tiling": {"tile": self.tile, "overlap": self.overlap} if self.tile else None,
            "output_activation": self.output_activation,
            "background_class": self.background_class,
            "feature_layer": self.feature_layer,
            "defaults": dict(self.defaults),
            "training": dict(self.training),
            "metrics": dict(self.metrics),
            "sources": list(self.sources),
            "created": self.created,
        }
        if self.sha256 or self.signature:  # only the registry's own copies carry the record
            out.update({"sha256": dict(self.sha256), "signature": self.signature})
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "manifest") -> "Manifest":
        """Validate and build; every fault raises ``ModelError`` naming ``where`` and the field."""

        def bad(msg: str) -> ModelError:
            return ModelError(f"{where}: {msg}")

        if not isinstance(data, dict):
            raise bad("the manifest must be a JSON object")
        for key in ("name", "version", "task"):
            if not isinstance(data.get(key), str) or not data.get(key):
                raise bad(f"'{key}' is missing or not a string")
        for key in ("name", "version"):
            if not _NAME_RE.match(data[key]):
                raise bad(f"'{key}' {data[key]!r} may only hold letters, digits and _ . + -")
        task = data["task"]
        if task not in TASKS:
            raise bad(f"unknown task {task!r}; this Specula runs {', '.join(TASKS)} (update Specula?)")
        classes = data.get("classes", [])
        if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
            raise bad("'classes' must be a list of non-empty strings")
        if task != "prompt" and not classes:
            raise bad(f"'classes' is empty; a {task} model must name its classes")
        size = data.get("input_size")
        if size is not None:
            if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
                raise bad(f"'input_size' must be [height, width] in pixels or null, not {size!r}")
            size = (size[0], size[1])
        norm = data.get("normalization") or {}
        mean = norm.get("mean", [0.485, 0.456, 0.406])
        std = norm.get("std", [0.229, 0.224, 0.225])
        for key, vals in (("mean", mean), ("std", std)):
            if not (isinstance(vals, list) and len(vals) == 3 and all(isinstance(v, (int, float)) for v in vals)):
                raise bad(f"'normalization.{key}' must be three numbers (RGB, on the 0..1 scale)")
        if any(v <= 0 for v in std):
            raise bad("'normalization.std' must be positive")
        tiling = data.get("tiling")
        tile, overlap = None, 128
        if tiling:
            tile, overlap = tiling.get("tile"), tiling.get("overlap", 128)
            if not (isinstance(tile, int) and tile > 0 and isinstance(overlap, int) and 0 <= overlap < tile // 2):
                raise bad(f"'tiling' needs tile > 0 and 0 <= overlap < tile/2, got {tiling!r}")
        act = data.get("output_activation", "none")
        if act not in ACTIVATIONS:
            raise bad(f"'output_activation' {act!r} is not one of {', '.join(ACTIVATIONS)}")
        bg = data.get("background_class")
        if bg is not None and bg not in classes:
            raise bad(f"'background_class' {bg!r} is not in 'classes'")
        for key in ("defaults", "training", "metrics"):
            if not isinstance(data.get(key, {}), dict):
                raise bad(f"'{key}' must be an object")
        sources = data.get("sources", [])
        if not isinstance(sources, list):
            raise bad("'sources' must be a list")
        sha256 = data.get("sha256") or {}
        if not (isinstance(sha256, dict) and all(isinstance(k, str) and isinstance(v, str) and _SHA256_RE.match(v)
                                                 for k, v in sha256.items())):
            raise bad("'sha256' must map file names to SHA-256 digests (64 hex digits)")
        signature = data.get("signature") or ""
        if not isinstance(signature, str):
            raise bad("'signature' must be a string")
        return cls(
            name=data["name"], version=data["version"], task=task, classes=tuple(classes),
            input_size=size, mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std),  # type: ignore[arg-type]
            tile=tile, overlap=overlap, output_activation=act, background_class=bg,
            feature_layer=data.get("feature_layer"), defaults=dict(data.get("defaults", {})),
            training=dict(data.get("training", {})), metrics=dict(data.get("metrics", {})),
            sources=tuple(str(s) for s in sources), created=str(data.get("created", "")),
            sha256=dict(sha256), signature=signature,
        )

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(f"{path}: no manifest.json; a model folder needs one") from None
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: not readable JSON ({exc})") from None
        return cls.from_json(data, str(path))


@dataclass(frozen=True)
class ModelInfo:
    """One registered version: its manifest, its folder and whether it is shipped (read-only)."""

    manifest: Manifest
    path: Path
    read_only: bool = False

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def task(self) -> str:
        return self.manifest.task

    def file(self, filename: str) -> Path:
        return self.path / filename

    def has(self, filename: str) -> bool:
        return (self.path / filename).is_file()

    def stamp(self) -> tuple:
        """Changes when any weight file is replaced (path, size, mtime)."""
        out = []
        for f in WEIGHT_FILES + (MANIFEST,):
            try:
                st = (self.path / f).stat()
            except OSError:
                continue
            out.append((f, st.st_size, st.st_mtime_ns))
        return tuple(out)


def check_files(info: ModelInfo) -> None:
    """Raise ``ModelError`` when the weight files the task needs are missing."""
    alternatives = REQUIRED_FILES[info.task]
    if any(all(info.has(f) for f in alt) for alt in alternatives):
        return
    wanted = " or ".join(" + ".join(alt) for alt in alternatives)
    raise ModelError(f"{info.path}: a {info.task} model needs {wanted}; found {sorted(p.name for p in info.path.iterdir())}")


# ------------------------------------------------------------------ trust in weight files
def torchscript_problem(path: Path) -> Optional[str]:
    """Why ``path`` is not a TorchScript archive (one line), or None when it is one.

    ``torch.jit.save`` writes a zip holding ``<archive>/constants.pkl`` and the module's
    ``<archive>/code/``; a plain pickle is no zip, and a ``torch.save`` archive (a state
    dict or a pickled model) has neither. Only the zip directory is read: nothing is unpickled.
    """
    advice = ("Specula loads only TorchScript (torch.jit.script(model).save(...)) or ONNX; "
              "save or export the model that way")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return (f"{path}: not a TorchScript archive (not even a zip file: a plain pickle, which would run "
                f"code when loaded); {advice}")
    has_constants = any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in names)
    has_code = any(n.startswith("code/") or "/code/" in n for n in names)
    if not (has_constants and has_code):
        return (f"{path}: not a TorchScript archive (a torch.save archive: a state dict or a pickled "
                f"model, not runnable here); {advice}")
    return None


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _signed_text(name: str, version: str, sha256: Mapping[str, str]) -> bytes:
    return json.dumps({"name": name, "version": version, "sha256": dict(sorted(sha256.items()))},
                      sort_keys=True).encode("utf-8")


def _sign(key: bytes, name: str, version: str, sha256: Mapping[str, str]) -> str:
    return hmac.new(key, _signed_text(name, version, sha256), hashlib.sha256).hexdigest()


def _read_key(root: Path) -> Optional[bytes]:
    try:
        key = (root / TRUST_KEY).read_bytes()
    except OSError:
        return None
    return key if len(key) >= 32 else None


def _registry_key(root: Path) -> bytes:
    """This registry's signing key, made on first use (readable by the user only)."""
    key = _read_key(root)
    if key is not None:
        return key
    root.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(root / TRUST_KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile: use theirs
        key = _read_key(root)
        if key is None:
            raise ModelError(f"{root / TRUST_KEY} is damaged; delete it and publish the models again") from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
        fh.flush()
        os.fsync(fh.fileno())
    return key


def _is_shipped(folder: Path) -> bool:
    """Whether ``folder`` lies in the models shipped with the installation (trusted as it is)."""
    try:
        from annotation.resources import asset_path

        return folder.resolve().is_relative_to(asset_path("models").resolve())
    except Exception:  # noqa: BLE001 - no assets (a bare bundle): nothing is shipped
        return False


def check_trusted(path: Path, data: bytes) -> None:
    """Raise ``ModelError`` unless ``data`` (the bytes of weight file ``path``) may be run.

    Trusted: a file whose SHA-256 this registry recorded in the manifest beside it, with
    the record signed by this registry's key, or a file of the shipped models. The caller
    loads exactly ``data``, so the file cannot change between this check and the load.
    """
    path = Path(path)
    folder = path.parent
    if _is_shipped(folder):
        return
    untrusted = (f"{path}: TorchScript runs its own code when loaded, and this file was neither published by "
                 f"Specula's trainer nor imported with --trust into this registry; if you trust where it came "
                 f"from, import its folder with `specula models import --trust FOLDER`")
    try:
        man = Manifest.read(folder / MANIFEST)
    except ModelError:
        raise ModelError(untrusted) from None
    key = _read_key(folder.parent.parent)  # <root>/<name>/<version>/<file>
    recorded = man.sha256.get(path.name)
    if key is None or recorded is None or not hmac.compare_digest(
            man.signature, _sign(key, man.name, man.version, man.sha256)):
        raise ModelError(untrusted)
    if not hmac.compare_digest(recorded, hashlib.sha256(data).hexdigest()):
        raise ModelError(f"{path}: its SHA-256 is not the one recorded when it was published (the file was "
                         f"replaced or damaged since); publish the model again, or import it with --trust")


def _write_json_atomic(path: Path, data: Any) -> None:
    atomic_write_bytes(path, json.dumps(data, indent=2).encode("utf-8"))


class Registry:
    """Model versions in ``root`` (writable) and ``extra_roots`` (read-only, e.g. shipped assets).

    Listing skips folders whose manifest is invalid and records why in ``problems``.
    """

    def __init__(self, root: str | Path, extra_roots: Sequence[str | Path] = ()):
        self.root = Path(root)
        self.extra_roots = tuple(Path(r) for r in extra_roots)
        self.problems: dict[str, str] = {}  # folder -> reason it was skipped

    @classmethod
    def default(cls) -> "Registry":
        """``user_data_dir()/models`` plus the shipped ``assets/models``."""
        from annotation.resources import user_data_dir

        return cls.with_shipped(user_data_dir() / "models")

    @classmethod
    def with_shipped(cls, root: str | Path) -> "Registry":
        """The registry at ``root`` plus the shipped ``assets/models`` (read-only): what a
        training run publishes into, so that a new version of a shipped model continues its
        numbering, starts from its weights and is judged against it."""
        from annotation.resources import asset_path

        extra: list[Path] = []
        try:
            shipped = asset_path("models")
            if shipped.is_dir() and shipped.resolve() != Path(root).resolve():
                extra.append(shipped)
        except Exception:  # noqa: BLE001 - a bundle without assets still has a user registry
            pass
        return cls(root, extra)

    # ---------------------------------------------------------------- listing
    def _scan_root(self, root: Path, read_only: bool) -> list[ModelInfo]:
        out: list[ModelInfo] = []
        if not root.is_dir():
            return out
        for name_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for vdir in sorted(p for p in name_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
                mpath = vdir / MANIFEST
                try:
                    man = Manifest.read(mpath)
                    if (man.name, man.version) != (name_dir.name, vdir.name):
                        raise ModelError(
                            f"{mpath}: manifest says {man.name}@{man.version} but the folder is "
                            f"{name_dir.name}/{vdir.name}"
                        )
                except ModelError as exc:
                    self.problems[str(vdir)] = str(exc)
                    continue
                self.problems.pop(str(vdir), None)
                out.append(ModelInfo(man, vdir, read_only))
        return out

    def list(self) -> list[ModelInfo]:
        """Every valid version, sorted by name then version (oldest first)."""
        merged: dict[tuple[str, str], ModelInfo] = {}
        for root in reversed(self.extra_roots):
            for info in self._scan_root(root, True):
                merged[(info.name, info.version)] = info
        for info in self._scan_root(self.root, False):
            merged[(info.name, info.version)] = info
        return sorted(merged.values(), key=lambda i: (i.name, version_key(i.version)))

    def names(self) -> list[str]:
        return sorted({i.name for i in self.list()})

    def versions(self, name: str) -> list[str]:
        return [i.version for i in self.list() if i.name == name]

    def latest_version(self, name: str) -> Optional[str]:
        v = self.versions(name)
        return v[-1] if v else None

    def get(self, name: str, version: Optional[str] = None) -> ModelInfo:
        """The version asked for, or the active one when ``version`` is None."""
        if version is None:
            return self.active(name)
        for root, ro in ((self.root, False),) + tuple((r, True) for r in self.extra_roots):
            vdir = root / name / version
            if vdir.is_dir():
                man = Manifest.read(vdir / MANIFEST)
                if (man.name, man.version) != (name, version):
                    raise ModelError(f"{vdir / MANIFEST}: manifest says {man.name}@{man.version}")
                return ModelInfo(man, vdir, ro)
        known = self.versions(name)
        hint = f"known versions: {', '.join(known)}" if known else f"known models: {', '.join(self.names()) or 'none'}"
        raise ModelError(f"no model {name}@{version} in {self.root}; {hint}")

    # ---------------------------------------------------------------- active pointer
    def _read_active(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / ACTIVE_FILE).read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def active(self, name: Optional[str] = None) -> ModelInfo:
        """The version in use of ``name`` (or of the default model when None).

        The pointer set by ``activate``/``publish`` wins; without one (or when it points at
        a version that no longer exists) the latest version is active.
        """
        data = self._read_active()
        infos = self.list()
        if name is None:
            name = data.get("default")
            if name is None or not any(i.name == name for i in infos):
                names = sorted({i.name for i in infos})
                if not names:
                    raise ModelError(f"no models in {self.root}; import one with 'specula models import'")
                if len(names) > 1:
                    raise ModelError(f"several models ({', '.join(names)}); name one with --model")
                name = names[0]
        mine = [i for i in infos if i.name == name]
        if not mine:
            raise ModelError(f"no model named {name!r}; known: {', '.join(sorted({i.name for i in infos})) or 'none'}")
        pinned = data.get("versions", {}).get(name)
        for i in mine:
            if i.version == pinned:
                return i
        return mine[-1]

    def activate(self, name: str, version: str) -> ModelInfo:
        """Make ``version`` the one in use (and ``name`` the default model)."""
        info = self.get(name, version)
        data = self._read_active()
        versions = data.setdefault("versions", {})
        history = data.setdefault("history", {}).setdefault(name, [])
        prev = versions.get(name)
        if prev and prev != version:
            history.append(prev)
            del history[:-20]
        versions[name] = version
        data["default"] = name
        _write_json_atomic(self.root / ACTIVE_FILE, data)
        return info

    def rollback(self, name: str) -> ModelInfo:
        """Go back to the version active before the current one (or the previous version)."""
        current = self.active(name).version
        data = self._read_active()
        history = data.get("history", {}).get(name, [])
        known = self.versions(name)
        while history:
            cand = history.pop()
            if cand in known and cand != current:
                data["versions"][name] = cand
                _write_json_atomic(self.root / ACTIVE_FILE, data)
                return self.get(name, cand)
        idx = known.index(current)
        if idx == 0:
            raise ModelError(f"{name}@{current} is the oldest version; nothing to roll back to")
        data.setdefault("versions", {})[name] = known[idx - 1]
        data.setdefault("history", {})[name] = []
        _write_json_atomic(self.root / ACTIVE_FILE, data)
        return self.get(name, known[idx - 1])

    # ---------------------------------------------------------------- the model for a palette
    def model_for_palette(self, palette: "Palette") -> tuple[Optional[ModelInfo], str]:
        """The model that proposes for a project with ``palette``: (its active version, why).

        The one rule every caller uses (editor, ``specula propose``, the headless job, the
        self-test). A model is a candidate when its task proposes (semantic, cam, instance)
        and every class it predicts (its classes minus the manifest's ``background_class``)
        is a class of the palette; each model is judged by its active version. Among
        several candidates: the user's own (trained or imported, not shipped) before
        shipped ones, then the most recently created (manifest ``created``; none counts
        as oldest), then by name. Returns (None, a one-line reason naming the palette,
        its classes and the models there are) when no model fits; otherwise the reason
        says why this one was chosen.
        """
        wanted = set(palette.names)
        actives: list[ModelInfo] = []
        for name in sorted({i.name for i in self.list() if i.task in PROPOSING_TASKS}):
            try:
                actives.append(self.active(name))
            except ModelError:  # a model that cannot be resolved cannot be chosen
                continue
        fitting = [
            i for i in actives
            if i.task in PROPOSING_TASKS and _predicted(i.manifest) and _predicted(i.manifest) <= wanted
        ]
        if not fitting:
            known = "; ".join(
                f"{i.name} [{', '.join(c for c in i.manifest.classes if c != i.manifest.background_class)}]"
                for i in actives
            ) or "none"
            return None, (
                f"no model proposes for palette '{palette.name}' (classes: {', '.join(palette.names)}); "
                f"models there are: {known}"
            )
        fitting.sort(key=lambda i: (i.read_only, -_created_seconds(i.manifest), i.name))
        best = fitting[0]
        if len(fitting) == 1:
            return best, f"the only model whose classes are all in palette '{palette.name}'"
        others = ", ".join(i.name for i in fitting[1:])
        return best, (f"chosen over {others} for palette '{palette.name}': your own models before shipped ones, "
                      f"then the most recently created")

    # ---------------------------------------------------------------- change detection
    def generation(self) -> int:
        """A number that changes when a version is published, removed or activated.

        Cheap (a few ``stat`` calls per model name): the engine calls it on every proposal.
        """
        parts: list[Any] = []
        for root in (self.root,) + self.extra_roots:
            try:
                parts.append(root.stat().st_mtime_ns)
                for name_dir in os.scandir(root):
                    if name_dir.is_dir() and not name_dir.name.startswith("."):
                        parts.append((name_dir.name, name_dir.stat().st_mtime_ns))
            except OSError:
                parts.append(None)
        try:
            parts.append((self.root / ACTIVE_FILE).stat().st_mtime_ns)
        except OSError:
            parts.append(None)
        return hash(tuple(parts))

    # ---------------------------------------------------------------- publishing
    def publish(
        self, src: str | Path | Iterable[str | Path], manifest: Manifest | Mapping[str, Any], *, activate: bool = True
    ) -> ModelInfo:
        """Copy weights (a folder, or a list of files) and the manifest into a new version, atomically.

        The version folder appears complete or not at all. With ``activate`` (the default)
        the new version becomes the one in use, so a running engine switches to it.
        """
        man = manifest if isinstance(manifest, Manifest) else Manifest.from_json(dict(manifest), "manifest to publish")
        if not man.created:
            man = Manifest.from_json({**man.to_json(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        if isinstance(src, (str, Path)) and Path(src).is_dir():
            files = [p for p in Path(src).iterdir() if p.is_file() and p.name != MANIFEST]
        elif isinstance(src, (str, Path)):
            files = [Path(src)]
        else:
            files = [Path(p) for p in src]
        for f in files:
            if not f.is_file():
                raise ModelError(f"{f}: no such file to publish")
        name_dir = self.root / man.name
        final = name_dir / man.version
        if final.exists():
            raise ModelError(f"{final} already exists; publish under a new version")
        name_dir.mkdir(parents=True, exist_ok=True)
        tmp = name_dir / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            for f in files:
                shutil.copy2(f, tmp / f.name)
            info = ModelInfo(man, tmp)
            check_files(info)
            # record what was published, hashed from the copies (a manifest from outside
            # may claim anything), and sign the record: only this registry can write it
            sha256 = {f.name: _file_sha256(tmp / f.name) for f in files}
            man = dataclasses.replace(man, sha256=sha256,
                                      signature=_sign(_registry_key(self.root), man.name, man.version, sha256))
            _write_json_atomic(tmp / MANIFEST, man.to_json())
            os.rename(tmp, final)  # atomic on one filesystem; fails if final appeared meanwhile
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        info = ModelInfo(man, final)
        if activate:
            self.activate(man.name, man.version)
        return info

    def next_version(self, name: str) -> str:
        """``"1"`` for a new model, else one more than the highest integer version."""
        ints = [int(v) for v in self.versions(name) if v.isdigit()]
        others = [v for v in self.versions(name) if not v.isdigit()]
        if others and not ints:
            return time.strftime("%Y%m%d-%H%M%S")
        return str(max(ints, default=0) + 1)

    def import_model(
        self, path: str | Path, name: Optional[str] = None, *, task: Optional[str] = None,
        classes: Optional[Sequence[str]] = None, version: Optional[str] = None, trust: bool = False,
    ) -> ModelInfo:
        """Import a model folder (with ``manifest.json``) or a bare ``.onnx`` file.

        A bare ONNX file needs ``name``; its task is ``task`` or guessed from the output
        names (``boxes``/``labels``/``scores``/``masks`` -> instance, else semantic) and
        its classes are ``classes`` or ``class_0..class_{C-1}`` from the output channels.

        A folder's ``model.pt`` must be TorchScript (a pickle is refused, ``trust`` or not),
        and because TorchScript runs its own code when loaded it is imported only with
        ``trust=True``; it is then recorded and signed like the trainer's own files.
        """
        path = Path(path)
        if path.is_dir():
            for weights in TORCHSCRIPT_FILES:
                file = path / weights
                if not file.is_file():
                    continue
                problem = torchscript_problem(file)
                if problem is not None:
                    raise ModelError(problem)
                if not trust:
                    raise ModelError(
                        f"{file}: TorchScript runs its own code when loaded; import it only if you trust where "
                        f"it came from, with `specula models import --trust {path}`"
                    )
            man = Manifest.read(path / MANIFEST)
            overrides: dict[str, Any] = {}
            if name:
                overrides["name"] = name
            if version:
                overrides["version"] = version
            if overrides:
                man = Manifest.from_json({**man.to_json(), **overrides}, str(path / MANIFEST))
            return self.publish(path, man)
        if path.suffix.lower() != ".onnx" or not path.is_file():
            raise ModelError(f"{path}: import a model folder with manifest.json, or an .onnx file")
        if not name:
            raise ModelError(f"{path}: a bare .onnx file needs a model name (--name)")
        guessed_task, guessed_classes, size = _guess_from_onnx(path)
        data = {
            "name": name,
            "version": version or self.next_version(name),
            "task": task or guessed_task,
            "classes": list(classes) if classes else guessed_classes,
            "input_size": list(size) if size else None,
            "output_activation": "none",
            "sources": [str(path)],
        }
        man = Manifest.from_json(data, str(path))
        tmpdir = Path(tempfile.mkdtemp(prefix="specula-import-"))
        try:
            shutil.copy2(path, tmpdir / "model.onnx")
            return self.publish(tmpdir, man)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _predicted(manifest: Manifest) -> set[str]:
    """The classes a model proposes: its classes without the background."""
    return {c for c in manifest.classes if c != manifest.background_class}


def _created_seconds(manifest: Manifest) -> float:
    """When the version was created (``created`` of the manifest), as a POSIX time; 0 when unknown."""
    try:
        return datetime.fromisoformat(manifest.created).timestamp()
    except ValueError:  # missing or hand-written: such a version counts as the oldest
        return 0.0


def _guess_from_onnx(path: Path) -> tuple[str, list[str], Optional[tuple[int, int]]]:
    """(task, classes, input size) read from the ONNX graph's inputs and outputs."""
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - reported as a model error
        raise ModelError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from None
    outs = {o.name: o for o in sess.get_outputs()}
    if {"boxes", "labels", "scores", "masks"} <= set(outs):
        return "instance", ["object"], None
    out = sess.get_outputs()[0]
    c = out.shape[1] if len(out.shape) == 4 and isinstance(out.shape[1], int) else 1
    shape = sess.get_inputs()[0].shape
    size = (shape[2], shape[3]) if len(shape) == 4 and all(isinstance(v, int) for v in shape[2:]) else None
    return "semantic", [f"class_{i}" for i in range(c)], size
