"""``specula train PROJECT --task semantic|cam|instance|clicks|irnet ...`` (and ``python -m training``).

Progress: JSON lines on stdout with ``--json`` or when stdout is not a terminal
(``{"event": "epoch", "epoch": .., "loss": .., "val": {..}}``, then
``{"event": "published", "name": .., "version": ..}``), a tqdm bar otherwise.
Errors: ``{"event": "error", "message": ..}`` and exit status 1. torch is imported
only when a run starts, so ``specula --help`` stays fast and works without it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

TASKS = ("semantic", "cam", "instance", "clicks", "irnet")
ENCODERS = ("efficientnet-lite0", "resnet34", "resnet50")


def _size(text: str) -> tuple[int, int]:
    parts = [int(p) for p in text.lower().replace("x", ",").split(",") if p]
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r}: give N or HxW in pixels")
    return parts[0], parts[1]


def configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("project", type=Path, help="project folder (holds specula.db)")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs (default per task: semantic 30, cam 10, instance 12, irnet 20; clicks trains by "
                        "--max-steps or --minutes)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of images held out for validation")
    p.add_argument("--seed", type=int, default=0, help="fixes the train/validation split and the augmentations")
    p.add_argument("--init", type=Path, default=None,
                   help="initial weights: a local state dict (.pt/.pth, loaded weights-only) or .safetensors")
    p.add_argument("--registry", type=Path, default=None, help="model registry folder (default: the user's)")
    p.add_argument("--name", default=None, help="model name (default: <project folder>-<task>)")
    p.add_argument("--version", default=None, help="version (default: next integer)")
    p.add_argument("--encoder", default=None, choices=ENCODERS,
                   help="cam: efficientnet-lite0 (default, ImageNet) or resnet34 (003, from scratch); "
                        "instance: efficientnet-lite0 (default) or resnet50")
    p.add_argument("--input-size", type=_size, default=None,
                   help="semantic: HxW network input; cam: crop side; instance: image side; clicks: crop side")
    p.add_argument("--fusion", default=None, choices=("early", "late"),
                   help="clicks: where the clicks enter the network: late (default: a light head over the frozen "
                        "encoder's features, computed once per crop) or early (beside the stem: the whole network "
                        "per click)")
    p.add_argument("--cam-model", default=None, metavar="NAME[@VERSION]",
                   help="irnet: the CAM model to learn from (default: the active <project>-cam, else the newest "
                        "CAM model whose classes are in the palette)")
    p.add_argument("--from-scratch", action="store_true",
                   help="semantic: start from ImageNet, not from the weights of the model version in use")
    p.add_argument("--gpus", type=int, default=1,
                   help="train on N GPUs of this machine (starts torchrun --standalone --nproc_per_node N; "
                        "with --device cpu, N CPU processes)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps")
    p.add_argument("--minutes", type=float, default=None, help="training time budget")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--json", action="store_true", help="progress as JSON lines even in a terminal")
    p.set_defaults(func=run_from_args)
    return p


def add_parsers(subparsers) -> argparse.ArgumentParser:
    """Add ``train`` to an ``argparse`` subparsers object (``specula``'s CLI calls this)."""
    p = subparsers.add_parser("train", help="train a model from a project and publish it to the registry",
                              description=__doc__.split("\n\n")[0])
    return configure_parser(p)


def options_from_args(args: argparse.Namespace):
    from training.common import TrainOptions

    encoder = args.encoder or "efficientnet-lite0"
    if args.task in ("semantic", "clicks") and encoder != "efficientnet-lite0":
        raise SystemExit(f"{args.task} trains an EfficientNet-Lite0 network; --encoder is for cam and instance")
    extra = {"fusion": args.fusion} if args.task == "clicks" and args.fusion else {}
    if args.from_scratch:
        extra["from_scratch"] = True
    if args.task == "irnet" and args.cam_model:
        extra["cam_model"] = args.cam_model
    return TrainOptions(
        project=args.project, task=args.task, epochs=args.epochs, device=args.device, val_fraction=args.val_fraction,
        seed=args.seed, init=args.init, registry=args.registry, name=args.name, version=args.version,
        encoder=encoder, input_size=args.input_size, batch_size=args.batch_size, max_steps=args.max_steps,
        minutes=args.minutes, lr=args.lr, json=args.json, num_threads=args.threads, extra=extra,
    )


def run(opts) -> dict:
    """Dispatch to the task's trainer; returns its result dict."""
    from training.common import Reporter

    reporter = Reporter(opts.json)
    if opts.task == "semantic":
        from training.semantic import train_semantic as trainer
    elif opts.task == "cam":
        from training.cam import train_cam as trainer
    elif opts.task == "instance":
        from training.instance import train_instance as trainer
    elif opts.task == "clicks":
        from training.clicks import train_clicks as trainer
    elif opts.task == "irnet":
        from training.irnet import train_irnet as trainer
    else:
        raise SystemExit(f"unknown task {opts.task!r}; use one of {', '.join(TASKS)}")
    return trainer(opts, reporter)


def torchrun_command(argv: Sequence[str], processes: int) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m training ARGS``:
    this run again as ``processes`` DistributedDataParallel processes on this machine
    (``--gpus`` removed from ``argv``). Across machines, run torchrun yourself on each:
    ``torchrun --nnodes M --node_rank R --nproc_per_node N --rdzv_endpoint HOST:29400
    -m training PROJECT --task ...`` (README)."""
    rest: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--gpus":
            skip = True
            continue
        if a.startswith("--gpus="):
            continue
        rest.append(a)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            "-m", "training", *rest]


def run_from_args(args: argparse.Namespace) -> int:
    import os

    from training.common import Reporter

    gpus = int(getattr(args, "gpus", 1) or 1)
    if gpus > 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        if getattr(sys, "frozen", False):
            print("specula train: --gpus needs Specula installed with pip (it starts torchrun); in a bundle, "
                  "train on one GPU", file=sys.stderr)
            return 2
        if args.device != "cpu":
            import torch

            have = torch.cuda.device_count()
            if have < gpus:
                print(f"specula train: --gpus {gpus} but {have} CUDA GPU(s) here; give at most {have}, or "
                      "--device cpu to run that many CPU processes (gloo)", file=sys.stderr)
                return 2
        import subprocess

        argv = list(getattr(args, "argv", None) or sys.argv[1:])
        if argv and argv[0] == "train":  # from `specula train ...`: the training module takes the rest
            argv = argv[1:]
        return subprocess.call(torchrun_command(argv, gpus))

    opts = options_from_args(args)
    try:
        run(opts)
    except (RuntimeError, FileNotFoundError, ValueError) as exc:
        reporter = Reporter(opts.json)
        reporter.emit("error", message=str(exc))
        if not reporter.json:
            print(f"specula train: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = configure_parser(argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0]))
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args.func(args)
