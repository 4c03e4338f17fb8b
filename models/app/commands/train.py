"""Train a model from a recipe (default: a small Max-Former on scikit-learn's digits).

Examples:
  maxformer train                                   # digits, CPU, a few minutes
  maxformer train --config cifar10 --data-dir ~/data --download
  maxformer train --config cifar10 --epochs 3 --set aa=null --set mixup=0
  maxformer train --set neuron=relu                 # the ANN twin of the same network
  maxformer train --log tensorboard                 # also TensorBoard scalars in RUN/tensorboard
  maxformer train --resume runs/maxformer_cifar-digits-20250101-120000
  torchrun --nproc_per_node 8 -m models.app train --config imagenet_10_384_t4 --data-dir /imagenet

A run folder (--output) receives config.yaml, metrics.csv, metrics.png, checkpoint-last.pt,
checkpoint-best.pt and summary.json; a folder that holds files is never taken by a new run.
Ctrl-C or SIGTERM saves a resumable checkpoint and exits. --resume RUN continues RUN in its
folder; --resume of another checkpoint (RUN/checkpoint-best.pt) continues in a new folder, so
the epochs after it stay as they are. Under torchrun --max-restarts, give --output: restarted
workers continue from its last checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.app.config import add_config_arguments, config_from_args, describe_data
from models.app.options import add_options, show_progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``maxformer train``."""
    from models.app.training.loggers import LOGGERS

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
        "--log", action="append", default=[], choices=list(LOGGERS), metavar="LOGGER",
        help=f"also log each epoch's metrics to {' or '.join(LOGGERS)} (repeatable; needs that "
        "package)",
    )
    parser.add_argument(
        "--output", type=Path,
        help="run folder, new or empty (default: runs/<model>-<dataset>-<time>)",
    )
    parser.add_argument("--resume", metavar="PATH", help="run folder or checkpoint to continue")
    add_options(parser, "device", "no_progress")


def run(args: argparse.Namespace) -> int:
    """Resolve the config, train, and print where the run went."""
    from models.app.errors import UserError
    from models.app.training.loggers import check_loggers

    check_loggers(args.log)
    resume = None
    if args.resume is not None:
        from models.app.training.checkpointing import load_resume_point
        from models.app.training.trainer import resume_config

        if args.config is not None:
            raise UserError("--config does not apply to --resume: a run keeps its own config")
        resume = load_resume_point(args.resume)
        cfg = config_from_args(args, base=resume.checkpoint["config"], combine=resume_config)
    else:
        cfg = config_from_args(args)
    print(f"{describe_data(cfg)} (saved in the run's config.yaml)", flush=True)
    from models.app.training.trainer import train  # torch and timm: once the config is valid

    result = train(
        cfg, output=args.output, resume=resume, progress=show_progress(args),
        device=args.device, log=args.log,
    )
    if result.output is not None:
        s = result.summary
        print(
            f"best top-1 {s['best_acc1']:.2f}% (epoch {s['best_epoch']}), "
            f"final top-1 {s['final_acc1']:.2f}%; run folder: {result.output}"
        )
    return 0
