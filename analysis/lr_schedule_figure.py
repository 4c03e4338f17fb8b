"""The ImageNet LR of a shipped recipe at every iteration, against the original's formula.

Ours: the recipe's scheduler (``sched_per_step``, ``lr_base_batch``) stepped per update.
The original: ``imagenet/utils.py`` ``adjust_learning_rate`` (linear warm-up from 0 over
``warmup_epochs``, then a half-cosine to ``min_lr``) with ``lr = blr x global batch / 256``.
Writes a PNG: the two curves for 8 x 64 and 4 x 64 images per step, and their difference.
Run ``python -m analysis.lr_schedule_figure --help``.
"""

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from models.app.config import build_config, read_recipe
from models.app.training.trainer import _build_state


def original_lr(cfg, gpus: int, epoch: float) -> float:
    """The original's LR at fractional ``epoch`` for ``gpus`` x ``cfg.batch_size`` images."""
    lr = cfg.lr * cfg.batch_size * gpus / 256
    if epoch < cfg.warmup_epochs:
        return lr * epoch / cfg.warmup_epochs
    progress = (epoch - cfg.warmup_epochs) / (cfg.epochs - cfg.warmup_epochs)
    return cfg.min_lr + (lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_curves(recipe: str, gpus: int, updates_per_epoch: int) -> tuple[list[float], list[float]]:
    """Our LR and the original's at every iteration of ``recipe`` on ``gpus`` processes."""
    cfg = build_config(read_recipe(recipe), {})
    state, total = _build_state(cfg, nn.Linear(1, 1), torch.device("cpu"), gpus,
                                updates_per_epoch)
    ours, original = [], []
    for k in range(total * updates_per_epoch):
        state.scheduler.step_update(k)
        ours.append(state.optimizer.param_groups[0]["lr"])
        original.append(original_lr(cfg, gpus, k / updates_per_epoch))
    return ours, original


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="imagenet_10_768_t4")
    parser.add_argument("--updates-per-epoch", type=int, default=50,
                        help="iterations per epoch drawn (the curves are in epochs)")
    parser.add_argument("--out", type=Path, default=Path("docs/figures/imagenet_lr.png"))
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    for gpus, colour in ((8, "tab:blue"), (4, "tab:orange")):
        ours, original = lr_curves(args.recipe, gpus, args.updates_per_epoch)
        epochs = [k / args.updates_per_epoch for k in range(len(ours))]
        top.plot(epochs, original, color=colour, lw=4, alpha=0.35,
                 label=f"original formula, {gpus} x 64")
        top.plot(epochs, ours, color=colour, lw=1, label=f"ours, {gpus} x 64")
        bottom.plot(epochs, [a - b for a, b in zip(ours, original, strict=True)], color=colour)
    top.set_ylabel("learning rate")
    top.set_title(f"{args.recipe}: LR per iteration")
    top.legend()
    bottom.set_xlabel("epoch")
    bottom.set_ylabel("ours - original")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
