"""Plumbing every trainer shares: options, device and DDP, progress, initial weights.

Progress goes out as JSON lines on stdout (``{"event": "epoch", ...}``) when asked
or when stdout is not a terminal (the GUI reads them), otherwise as a tqdm bar.
Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised and only
rank 0 reports, validates and publishes.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TextIO


@dataclass
class TrainOptions:
    """What a ``specula train`` run was asked to do (the CLI fills it)."""

    project: Path
    task: str
    epochs: Optional[int] = None
    device: str = "auto"
    val_fraction: float = 0.2
    seed: int = 0
    init: Optional[Path] = None
    registry: Optional[Path] = None
    name: Optional[str] = None
    version: Optional[str] = None
    encoder: str = "efficientnet-lite0"
    input_size: Optional[tuple[int, int]] = None
    batch_size: Optional[int] = None
    max_steps: Optional[int] = None  # stop after this many optimiser steps (tests, smoke runs)
    minutes: Optional[float] = None  # time budget for training (validation still runs)
    lr: Optional[float] = None
    json: bool = False
    num_threads: Optional[int] = None
    extra: dict[str, Any] = field(default_factory=dict)


class Reporter:
    """Progress: JSON lines (machine) or a tqdm bar plus short lines (person)."""

    def __init__(self, json_lines: Optional[bool] = None, stream: TextIO = sys.stdout, enabled: bool = True):
        self.stream = stream
        isatty = getattr(stream, "isatty", lambda: False)()
        self.json = bool(json_lines) or not isatty
        self.enabled = enabled
        self._bar: Any = None

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        if self.json:
            self.stream.write(json.dumps({"event": event, **fields}, default=_jsonable) + "\n")
            self.stream.flush()
            return
        if event == "step":
            self._tick(fields)
        elif event == "epoch":
            self._close_bar()
            val = ", ".join(f"{k} {v:.3f}" for k, v in (fields.get("val") or {}).items() if isinstance(v, float))
            print(f"epoch {fields.get('epoch')}: loss {fields.get('loss', float('nan')):.4f}  {val}", file=self.stream)
        else:
            self._close_bar()
            print(f"{event}: " + ", ".join(f"{k}={v}" for k, v in fields.items()), file=self.stream)

    def _tick(self, fields: dict) -> None:
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm is a base dependency
            return
        if self._bar is None:
            self._bar = tqdm(total=fields.get("total"), desc=f"epoch {fields.get('epoch')}", file=self.stream, leave=False)
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{fields.get('loss', 0.0):.4f}")

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    return str(v)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device_kind: str) -> DistInfo:
    """Join the ``torchrun`` process group (NCCL on GPU, Gloo on CPU).

    Under ``torchrun`` (``TORCHELASTIC_RUN_ID`` set) the group is joined even with one
    process, and a barrier brings its communicator up, so ``torchrun --nproc_per_node 1``
    proves NCCL works (``scripts/gpu_check.sh``); training then runs as one process.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launched = "TORCHELASTIC_RUN_ID" in os.environ
    if world <= 1 and not launched:
        return DistInfo()
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if device_kind == "cuda":
            import torch

            torch.cuda.set_device(local_rank)
            dist.init_process_group(backend="nccl", device_id=torch.device("cuda", local_rank))
        else:
            dist.init_process_group(backend="gloo")
        dist.barrier()
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def pick_device(choice: str = "auto", local_rank: int = 0):
    """``torch.device``: the GPU where one works (``auto``/``cuda``), the CPU otherwise.

    Asking for ``cuda`` without a usable GPU raises with a message saying so.
    """
    import torch

    if choice == "cpu":
        return torch.device("cpu")
    ok = torch.cuda.is_available()
    if choice == "cuda" and not ok:
        raise RuntimeError("--device cuda was asked for but no CUDA GPU is usable here; use --device cpu or auto")
    if ok:
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_init_weights(path: Path) -> dict:
    """A state dict from a local file: ``.safetensors`` (if installed) or a torch file
    loaded with ``weights_only=True`` (never plain pickle). A checkpoint holding
    ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--init {path}: no such file")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise RuntimeError(f"--init {path}: reading .safetensors needs the safetensors package") from exc
        return dict(load_file(str(path)))
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(
            f"--init {path}: not a plain state dict ({str(exc).splitlines()[0]}); "
            "save it with torch.save(model.state_dict(), ...) or as .safetensors"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise RuntimeError(f"--init {path}: expected a state dict, found {type(sd).__name__}")
    return sd


def apply_init(model, path: Path, prefix: str = "") -> dict[str, Any]:
    """Load ``path`` into ``model`` (keys optionally under ``prefix``), matching names and shapes.

    Returns a provenance record for the manifest: file, loaded and skipped key counts.
    Raises when nothing matches (a wrong file should not train silently from scratch).
    """
    import hashlib

    sd = load_init_weights(path)
    own = model.state_dict()
    loaded = {}
    for k, v in sd.items():
        name = prefix + k
        if name in own and tuple(own[name].shape) == tuple(v.shape):
            loaded[name] = v
    if not loaded:
        raise RuntimeError(f"--init {path}: none of its {len(sd)} tensors match this model's layers")
    model.load_state_dict(loaded, strict=False)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    return {"file": str(path), "sha256_16": digest, "loaded": len(loaded), "skipped": len(sd) - len(loaded)}


class Timer:
    def __init__(self, minutes: Optional[float]):
        self.start = time.monotonic()
        self.limit = None if minutes is None else minutes * 60.0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def expired(self) -> bool:
        return self.limit is not None and self.elapsed >= self.limit


def wrap_ddp(model, dist_info: DistInfo, device):
    """The model itself, or a ``DistributedDataParallel`` wrapper under torchrun."""
    if not dist_info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def rank_indices(n: int, dist_info: DistInfo, seed: int, shuffle: bool = True) -> list[int]:
    """This rank's share of ``range(n)``, as ``DistributedSampler`` deals it.

    One permutation fixed by ``seed`` (the same on every rank), padded by repeating its
    start until it divides evenly, then dealt round-robin: every rank gets
    ``ceil(n / world_size)`` indices, so every rank takes the same number of steps (a
    rank with one step fewer leaves the others waiting in the gradient all-reduce).
    """
    import numpy as np

    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    order = [int(i) for i in order]
    if not dist_info.distributed or n == 0:
        return order
    per_rank = -(-n // dist_info.world_size)
    total = per_rank * dist_info.world_size
    while len(order) < total:
        order += order[: total - len(order)]
    return order[dist_info.rank : total : dist_info.world_size]


def any_rank(flag: object, dist_info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on any (a step or time budget that runs
    out on one rank must stop all of them at the same step); ``bool(flag)`` alone."""
    if not dist_info.distributed:
        return bool(flag)
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(int(t.item()))


def gather_rank_steps(steps: int, samples: int, dist_info: DistInfo) -> list[dict[str, int]]:
    """Every rank's optimiser steps and training samples, indexed by rank (for the manifest:
    how the work was split). A collective: every rank calls it once, after training."""
    mine = [int(steps), int(samples)]
    if not dist_info.distributed:
        return [{"rank": 0, "steps": mine[0], "samples": mine[1]}]
    import torch
    import torch.distributed as dist

    t = torch.tensor(mine, dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    parts = [torch.zeros_like(t) for _ in range(dist_info.world_size)]
    dist.all_gather(parts, t)
    return [{"rank": r, "steps": int(p[0]), "samples": int(p[1])} for r, p in enumerate(parts)]


def make_loader(dataset, batch_size: int, shuffle: bool, dist_info: DistInfo, seed: int, drop_last: bool = False):
    """A ``DataLoader``; with a ``DistributedSampler`` under torchrun.

    The sampler shuffles with ``seed`` (the same on every rank; call its ``set_epoch``
    each epoch) and pads the dataset to a multiple of the world size, so every rank
    gets the same number of samples and therefore of batches. The dataset itself must
    be the same on every rank (seed its sampling with the run's seed, not the rank)."""
    import torch
    from torch.utils.data import DataLoader

    sampler = None
    if dist_info.distributed:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
        num_workers=0, drop_last=drop_last, generator=g,
    )


def start_run(opts: "TrainOptions", reporter: Optional["Reporter"] = None) -> tuple["Reporter", "DistInfo", Any]:
    """What every trainer does first: the reporter, the process group, the device, threads, seeds.

    Returns ``(reporter, dist_info, device)``.
    """
    import torch

    reporter = reporter or Reporter(opts.json)
    dist_info = setup_distributed("cuda" if opts.device != "cpu" and torch.cuda.is_available() else "cpu")
    if not dist_info.is_main:
        # one voice per run: rank 0 reports progress (the GUI reads one stream of JSON lines)
        reporter.enabled = False
    device = pick_device(opts.device, dist_info.local_rank)
    if opts.num_threads:
        torch.set_num_threads(opts.num_threads)
    seed_everything(opts.seed)
    return reporter, dist_info, device
