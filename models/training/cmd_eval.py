"""Evaluate a checkpoint on a held-out set: top-1, top-5, loss and images per second.

The model and data settings come from the training checkpoint's saved config when it has
one, otherwise from --config (a recipe) and the flags. Weights load with
models.load_checkpoint(model, checkpoint, strict=True).

Examples:
  maxformer eval --checkpoint runs/maxformer_cifar-digits-20250101-120000/checkpoint-best.pt
  maxformer eval --model maxformer_cifar --config cifar10 --checkpoint max_former_cifar10.pth \\
      --dataset cifar10 --data-dir ~/data
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.training.cmd_train import overrides_from
from models.training.config import DATASETS, build_config, read_recipe

SHORTCUTS = {
    "--model": ("model", str, "timm model name (default: from the checkpoint's config)"),
    "--dataset": ("dataset", str, f"one of {', '.join(DATASETS)}"),
    "--data-dir": ("data_dir", str, "folder holding the dataset"),
    "--batch-size": ("batch_size", int, "batch size per process"),
    "--T": ("T", int, "time steps"),
    "--img-size": ("img_size", int, "input height and width"),
    "--workers": ("workers", int, "data-loading worker processes"),
    "--amp": ("amp", str, "auto (bf16 on GPU, off on CPU), off, bf16 or fp16"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``maxformer eval``."""
    parser.add_argument("--checkpoint", required=True, type=Path, help="checkpoint file")
    parser.add_argument(
        "--config", metavar="NAME_OR_PATH",
        help="recipe for a checkpoint without a saved config (default: digits)",
    )
    for flag, (key, kind, text) in SHORTCUTS.items():
        parser.add_argument(
            flag, dest=f"set_{key}", metavar=key.upper(), type=kind, default=None, help=text
        )
    parser.add_argument(
        "--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
        help="override any config key; VALUE is YAML",
    )
    parser.add_argument("--ema", action="store_true", help="evaluate the EMA weights")
    parser.add_argument("--json", type=Path, help="also write the metrics to this JSON file")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Build the model and held-out data, load the weights, evaluate, print the metrics."""
    from models import CheckpointError, load_checkpoint
    from models.checkpoint import read_checkpoint
    from models.training import distributed
    from models.training.data import build_datasets, eval_loader
    from models.training.engine import evaluate
    from models.training.errors import UserError
    from models.training.modeling import amp_dtype, create_model

    try:
        checkpoint = read_checkpoint(args.checkpoint)
    except (FileNotFoundError, CheckpointError) as err:
        raise UserError(str(err)) from err
    saved = checkpoint.get("config")
    base = saved if isinstance(saved, dict) else read_recipe(args.config or "digits")
    cfg = build_config(base, overrides_from(args))
    weights = checkpoint
    if args.ema:
        if not checkpoint.get("ema"):
            raise UserError(f"{args.checkpoint} holds no EMA weights (train with ema: true)")
        weights = {"model": checkpoint["ema"]}
    ctx = distributed.setup(args.device)
    try:
        _, val_set, info = build_datasets(cfg)
        model = create_model(cfg, info)
        try:
            load_checkpoint(model, weights, strict=True)
        except CheckpointError as err:
            raise UserError(f"{args.checkpoint}: {err}") from err
        model.to(ctx.device)
        loader = eval_loader(val_set, cfg.batch_size, cfg.workers, ctx)
        progress = ctx.is_main and not args.no_progress and sys.stderr.isatty()
        metrics = evaluate(model, loader, ctx, amp_dtype=amp_dtype(cfg.amp, ctx.device),
                           progress=progress)
    finally:
        distributed.cleanup()
    if ctx.is_main:
        print(
            f"{cfg.model} on {cfg.dataset} ({metrics['images']} images): "
            f"top-1 {metrics['acc1']:.2f}%  top-5 {metrics['acc5']:.2f}%  "
            f"loss {metrics['loss']:.4f}  {metrics['images_per_sec']:.1f} images/s"
        )
        if args.json:
            args.json.write_text(json.dumps({"model": cfg.model, "dataset": cfg.dataset,
                                             **metrics}, indent=2) + "\n")
    return 0
