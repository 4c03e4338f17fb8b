"""Train a model from a recipe (default: a small Max-Former on scikit-learn's digits).

Examples:
  maxformer train                                   # digits, CPU, a few minutes
  maxformer train --config cifar10 --data-dir ~/data --download
  maxformer train --config cifar10 --epochs 3 --set aa=null --set mixup=0
  maxformer train --set neuron=relu                 # the ANN twin of the same network
  maxformer train --resume runs/maxformer_cifar-digits-20250101-120000
  torchrun --nproc_per_node 8 -m models.app train --config imagenet_10_384_t4 --data-dir /imagenet

A run folder (--output) receives config.yaml, metrics.csv, checkpoint-last.pt,
checkpoint-best.pt and summary.json. Ctrl-C saves a resumable checkpoint and exits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.app.config import add_config_arguments, config_from_args
from models.app.options import add_options, show_progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``maxformer train``."""
    add_config_arguments(
        parser,
        ("model", "dataset", "data_dir", "epochs", "batch_size", "lr", "T", "img_size",
         "workers", "seed", "amp", "lif_backend"),
        config_help="shipped recipe or a YAML file (default: digits)",
        T={"help": "time steps (event frames per clip for DVS data)"},
    )
    parser.add_argument(
        "--download", action="store_const", const=True, default=None,
        help="download the dataset when missing (CIFAR, CIFAR10-DVS)",
    )
    parser.add_argument(
        "--log-stage-stats", action="store_const", const=True, default=None,
        help="log each stage's firing rate and high-frequency ratio every epoch "
        "(columns rate_stageN and hf_ratio_stageN of metrics.csv)",
    )
    parser.add_argument(
        "--output", type=Path, help="run folder (default: runs/<model>-<dataset>-<time>)"
    )
    parser.add_argument("--resume", metavar="PATH", help="run folder or checkpoint to continue")
    add_options(parser, "device", "no_progress")


def run(args: argparse.Namespace) -> int:
    """Resolve the config, train, and print where the run went."""
    from models.app.errors import UserError
    from models.app.training.checkpointing import load_training_checkpoint, resume_path
    from models.app.training.trainer import resume_config, train

    checkpoint, output = None, args.output
    if args.resume:
        if args.config is not None:
            raise UserError("--config does not apply to --resume: a run keeps its own config")
        path = resume_path(args.resume)
        checkpoint = load_training_checkpoint(path)
        cfg = config_from_args(args, base=checkpoint["config"], combine=resume_config)
        output = output or path.parent
    else:
        cfg = config_from_args(args)
    result = train(
        cfg, output=output, checkpoint=checkpoint, progress=show_progress(args),
        device=args.device,
    )
    if result.output is not None:
        s = result.summary
        print(
            f"best top-1 {s['best_acc1']:.2f}% (epoch {s['best_epoch']}), "
            f"final top-1 {s['final_acc1']:.2f}%; run folder: {result.output}"
        )
    return 0
