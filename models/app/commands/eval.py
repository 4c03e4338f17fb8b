"""Evaluate a checkpoint on a held-out set: top-1, top-5, loss and images per second.

The model, data and evaluation settings come from the training checkpoint's saved config when
it has one, otherwise from --config (a recipe) and the flags; a paper recipe evaluates as the
original code did (for ImageNet its imagenet/test.py: resize to img_size / 0.875 bicubic, centre
crop, batches of 2.5 x batch_size, fp16 autocast on CUDA; docs/recipes.md). Weights load with
models.load_checkpoint(model, checkpoint, strict=True); a published file saved by older code
(other names, the original's order) is mapped by order.

Examples:
  maxformer eval --checkpoint runs/maxformer_cifar-digits-20250101-120000/checkpoint-best.pt
  maxformer eval --model maxformer_10_384 --config imagenet_10_384_t4 \\
      --checkpoint 10-384-T4.pth.tar --data-dir /data/imagenet
  maxformer eval --model maxformer_cifar --config cifar10 --checkpoint max_former_cifar10.pth \\
      --dataset cifar10 --data-dir ~/data
  maxformer eval --checkpoint runs/.../checkpoint-best.pt --set neuron=relu   # the ANN twin
"""

from __future__ import annotations

import argparse
import json

from models.app.config import add_config_arguments, config_from_args
from models.app.options import add_options, positive_int, show_progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``maxformer eval``."""
    add_options(parser, "checkpoint", checkpoint={"required": True})
    add_config_arguments(
        parser,
        ("model", "dataset", "data_dir", "batch_size", "T", "img_size", "workers", "amp",
         "lif_backend"),
        config_help="recipe for a checkpoint without a saved config (default: digits)",
    )
    parser.add_argument("--ema", action="store_true", help="evaluate the EMA weights")
    parser.add_argument("--T-values", type=positive_int, nargs="+", metavar="T",
                        help="a converted network (maxformer convert) at each T: accuracy vs T")
    add_options(parser, "json", "device", "no_progress")


def run(args: argparse.Namespace) -> int:
    """Build the model and held-out data, load the weights, evaluate, print the metrics."""
    from models.app.config import check_saved_config
    from models.app.data import build_datasets, eval_batch_size, eval_loader
    from models.app.errors import UserError
    from models.app.files import atomic_write_text, check_writable
    from models.app.modeling import check_input, load_weights, model_for_config
    from models.app.training import distributed
    from models.app.training.engine import evaluate, evaluation_options
    from models.checkpoint import read_checkpoint

    if args.json is not None:
        check_writable(args.json)
    checkpoint = read_checkpoint(args.checkpoint)
    saved = checkpoint.get("config")
    if saved is not None:
        saved = check_saved_config(saved, str(args.checkpoint))
    cfg = config_from_args(args, base=saved)
    weights = checkpoint
    if args.ema:
        if not checkpoint.get("ema"):
            raise UserError(f"{args.checkpoint} holds no EMA weights (train with ema: true)")
        weights = {"model": checkpoint["ema"]}
    ctx = distributed.setup(args.device)
    try:
        _, val_set, info = build_datasets(cfg, need_train=False)
        model = model_for_config(cfg, info)
        load_weights(model, weights, args.checkpoint)
        model.to(ctx.device)
        if cfg.neuron == "if_converted":  # long runs in chunks, the state carried
            from models.conversion import ChunkedNetwork
            model = ChunkedNetwork(model, cfg.T)
        elif args.T_values:
            raise UserError("--T-values takes a converted checkpoint (maxformer convert)")
        check_input(model, val_set[0][0], f"{cfg.dataset} at img_size {cfg.img_size}")
        loader = eval_loader(val_set, eval_batch_size(cfg), cfg.workers, ctx)
        options = evaluation_options(cfg, ctx.device)
        curve = []
        for steps in args.T_values or [cfg.T]:
            if args.T_values:
                model.T = steps
            metrics = evaluate(model, loader, ctx, progress=ctx.is_main and show_progress(args),
                               **options)
            curve.append({"T": steps, **metrics})
    finally:
        distributed.cleanup()
    if ctx.is_main and args.T_values:
        ann = checkpoint.get("conversion", {}).get("ann_acc1")
        for point in curve:
            print(f"T={point['T']:4d}: top-1 {point['acc1']:.2f}%  ({point['images_per_sec']:.1f}"
                  f" images/s)" + ("" if ann is None else f"  ANN {ann:.2f}%"))
        if args.json:
            report = {"model": cfg.model, "dataset": cfg.dataset, "ann_acc1": ann,
                      "curve": curve}
            atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
        return 0
    if ctx.is_main:
        print(f"{cfg.model} on {cfg.dataset} ({metrics['images']} images): {_scores(metrics)}  "
              f"{metrics['images_per_sec']:.1f} images/s")
        if args.json:
            report = {"model": cfg.model, "dataset": cfg.dataset, **{  # nan: null
                key: None if value != value else value for key, value in metrics.items()}}
            atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    return 0


def _scores(metrics: dict) -> str:
    """Top-1, top-5 and loss over the images with finite logits, and how many had none."""
    bad, finite = metrics["non_finite"], metrics["finite"]
    if not finite:
        return f"no accuracy: all {bad} images gave NaN/inf logits"
    scores = (f"top-1 {metrics['acc1']:.2f}%  top-5 {metrics['acc5']:.2f}%  "
              f"loss {metrics['loss']:.4f}")
    if bad:
        return f"{bad} images gave NaN/inf logits; over the {finite} finite ones: {scores}"
    return scores
