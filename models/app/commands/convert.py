"""Convert a ReLU- or QCFS-trained checkpoint into an IF network (ANN-to-SNN conversion).

Per-layer thresholds are the --percentile of each ReLU's positive outputs on training images
(robust normalisation), or the trained clips of a QCFS network (train with --set neuron=qcfs).
The converted checkpoint (config neuron: if_converted, T: --T) is read by eval, spectra and
energy like any other; `maxformer eval --T-values 8 32 128 256` gives its accuracy against T.

Examples:
  maxformer train --set neuron=relu --T 1 --set 'model_kwargs={embed_dims: 32, mixers: [identity, dwc3, dwc3]}'
  maxformer convert --checkpoint runs/RUN/checkpoint-best.pt --output converted.pt --T 32
  maxformer eval --checkpoint converted.pt --T-values 8 32 128 256
"""  # noqa: E501

from __future__ import annotations

import argparse
from pathlib import Path

from models.app.options import add_options, finite_float, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``maxformer convert``."""
    add_options(parser, "checkpoint", checkpoint={"required": True})
    parser.add_argument("--output", type=Path, required=True,
                        help="converted checkpoint to write (a new file)")
    parser.add_argument("--percentile", type=finite_float, default=99.9,
                        help="percentile of a ReLU's positive outputs taken as its threshold")
    parser.add_argument("--calibration-batches", type=positive_int, default=8, metavar="N",
                        help="batches of training images for the thresholds")
    parser.add_argument("--T", type=positive_int, default=32,
                        help="time steps the converted network runs at by default")
    add_options(parser, "device", "no_progress")


def run(args: argparse.Namespace) -> int:
    """Load the ANN, calibrate, convert, write the converted checkpoint."""
    import itertools

    import torch
    from torch.utils.data import DataLoader

    from models.app.config import build_config, check_saved_config
    from models.app.data import build_datasets, eval_loader
    from models.app.errors import UserError
    from models.app.files import atomic_write
    from models.app.modeling import amp_dtype, load_weights, model_for_config
    from models.app.options import resolve_device
    from models.app.training import distributed
    from models.app.training.engine import evaluate
    from models.checkpoint import read_checkpoint
    from models.conversion import ConversionError, convert

    if args.output.exists():
        raise UserError(f"{args.output} exists; give a new --output file (nothing is overwritten)")
    checkpoint = read_checkpoint(args.checkpoint)
    if checkpoint.get("config") is None:
        raise UserError(f"{args.checkpoint} holds no training config; convert a checkpoint "
                        "of maxformer train")
    saved = check_saved_config(checkpoint["config"], str(args.checkpoint))
    if saved["neuron"] not in ("relu", "qcfs"):
        raise UserError(f"{args.checkpoint} has neuron {saved['neuron']!r}; convert a network "
                        "trained with neuron relu or qcfs")
    cfg = build_config(saved, {})
    device = resolve_device(args.device)
    train_set, val_set, info = build_datasets(cfg)
    ann = model_for_config(cfg, info)
    load_weights(ann, checkpoint, args.checkpoint)
    ann.to(device).eval()
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=False)
    images = (x for x, _ in itertools.islice(loader, args.calibration_batches))
    try:
        snn = convert(ann, images, args.percentile, backend=cfg.lif_backend)
    except ConversionError as err:
        raise UserError(f"{args.checkpoint}: {err}") from err
    ctx = distributed.setup(args.device)  # the ANN's accuracy as maxformer eval gives it
    try:
        ann_acc1 = evaluate(ann, eval_loader(val_set, cfg.batch_size, cfg.workers, ctx), ctx,
                            amp_dtype=amp_dtype(cfg.amp, ctx.device))["acc1"]
    finally:
        distributed.cleanup()
    converted = build_config(saved, {"neuron": "if_converted", "T": args.T})
    record = {
        "model": {k: v.cpu() for k, v in snn.state_dict().items()},
        "config": converted.to_dict(),
        "conversion": {"source": str(args.checkpoint.resolve()),
                       "source_neuron": saved["neuron"],
                       "percentile": args.percentile, "ann_acc1": ann_acc1},
    }
    atomic_write(args.output, lambda f: torch.save(record, f))
    print(f"converted {cfg.model} ({saved['neuron']}, top-1 {ann_acc1:.2f}% on {cfg.dataset}) "
          f"to IF neurons: {args.output}")
    return 0
