"""Train a model from a recipe (default: a small Max-Former on scikit-learn's digits).

Examples:
  maxformer train                                   # digits, CPU, a few minutes
  maxformer train --config cifar10 --data-dir ~/data --download
  maxformer train --config cifar10 --epochs 3 --set aa=null --set mixup=0
  maxformer train --resume runs/maxformer_cifar-digits-20250101-120000
  torchrun --nproc_per_node 8 -m models.cli train --config imagenet_10_384_t4 --data-dir /imagenet

A run folder (--output) receives config.yaml, metrics.csv, checkpoint-last.pt,
checkpoint-best.pt and summary.json. Ctrl-C saves a resumable checkpoint and exits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.training.config import (
    DATASETS,
    build_config,
    parse_assignments,
    read_recipe,
    recipe_names,
)

# command-line shortcuts for the most used config keys: flag -> (key, type, help)
SHORTCUTS = {
    "--model": ("model", str, "timm model name (registered by `import models`)"),
    "--dataset": ("dataset", str, f"one of {', '.join(DATASETS)}"),
    "--data-dir": ("data_dir", str, "folder holding the dataset"),
    "--epochs": ("epochs", int, "training epochs (plus cooldown_epochs)"),
    "--batch-size": ("batch_size", int, "batch size per process"),
    "--lr": ("lr", float, "peak learning rate"),
    "--T": ("T", int, "time steps (event frames per clip for DVS data)"),
    "--img-size": ("img_size", int, "input height and width"),
    "--workers": ("workers", int, "data-loading worker processes"),
    "--seed": ("seed", int, "random seed"),
    "--amp": ("amp", str, "auto (bf16 on GPU, off on CPU), off, bf16 or fp16"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``maxformer train``."""
    parser.add_argument(
        "--config", default="digits", metavar="NAME_OR_PATH",
        help=f"shipped recipe ({', '.join(recipe_names())}) or a YAML file (default: digits)",
    )
    for flag, (key, kind, text) in SHORTCUTS.items():
        parser.add_argument(
            flag, dest=f"set_{key}", metavar=key.upper(), type=kind, default=None, help=text
        )
    parser.add_argument(
        "--download", dest="set_download", action="store_const", const=True, default=None,
        help="download the dataset when missing (CIFAR, CIFAR10-DVS)",
    )
    parser.add_argument(
        "--log-stage-stats", dest="set_log_stage_stats", action="store_const", const=True,
        default=None,
        help="log each stage's firing rate and high-frequency ratio every epoch "
        "(columns rate_stageN and hf_ratio_stageN of metrics.csv)",
    )
    parser.add_argument(
        "--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
        help="override any config key; VALUE is YAML (e.g. --set aa=null --set 'scale=[1,1]')",
    )
    parser.add_argument(
        "--output", type=Path, help="run folder (default: runs/<model>-<dataset>-<time>)"
    )
    parser.add_argument("--resume", metavar="PATH", help="run folder or checkpoint to continue")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def overrides_from(args: argparse.Namespace) -> dict:
    """Config values given on the command line (shortcut flags, then ``--set``)."""
    values = {
        name[len("set_"):]: value
        for name, value in vars(args).items()
        if name.startswith("set_") and value is not None
    }
    values.update(parse_assignments(args.assignments))
    return values


def run(args: argparse.Namespace) -> int:
    """Resolve the config, train, and print where the run went."""
    from models.training.checkpointing import load_training_checkpoint, resume_path
    from models.training.trainer import resume_config, train

    overrides = overrides_from(args)
    checkpoint, output = None, args.output
    if args.resume:
        path = resume_path(args.resume)
        checkpoint = load_training_checkpoint(path)
        cfg = resume_config(checkpoint["config"], overrides)
        output = output or path.parent
    else:
        cfg = build_config(read_recipe(args.config), overrides)
    progress = not args.no_progress and sys.stderr.isatty()
    result = train(cfg, output=output, checkpoint=checkpoint, progress=progress, device=args.device)
    if result.output is not None:
        s = result.summary
        print(
            f"best top-1 {s['best_acc1']:.2f}% (epoch {s['best_epoch']}), "
            f"final top-1 {s['final_acc1']:.2f}%; run folder: {result.output}"
        )
    return 0
