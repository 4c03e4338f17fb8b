"""Energy of a model (45 nm): firing rates, MACs, SOPs and energy per layer, part and stage.

E = 4.6 pJ x MACs + 0.9 pJ x SOPs; SOPs = input firing rate x T x FLOPs; layers on real values
(the first one, on pixels) count as MACs, a static image once, event frames T times. The ANN
counterpart runs the same layers once: 4.6 pJ x FLOPs of one step. Without --checkpoint the
weights are random, and so are the firing rates.

Examples:
  maxformer energy --model maxformer_cifar --T 4
  maxformer energy --model maxformer_10_384 --checkpoint 10-384-T4.pth.tar --json energy.json
  maxformer energy --model maxformer_cifar --checkpoint best.pt --dataset cifar10 \\
      --data-dir ~/data --batches 8
  maxformer energy --model maxformer_event --T 16 --img-size 128
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from models.app.modeling import check_model_name, create_model, load_weights
from models.app.options import add_options, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``maxformer energy``."""
    add_options(
        parser, "model", "T", "checkpoint", "dataset", "data_dir", "img_size", "batch_size",
        model={"help": "timm model name, e.g. maxformer_cifar (default: the one a training "
               "checkpoint of maxformer train names in its config, with its T, width and input "
               "size)"},
        T={"help": "time steps (default: the model's)"},
        checkpoint={"help": "weights (default: random weights)"},
        dataset={"help": "measure on held-out images of this dataset (as in maxformer eval)"},
        img_size={"help": "image height and width (default: the model's pretrained_cfg "
                  "input_size)"},
        batch_size={"default": 1, "help": "images per batch (default: 1)"},
    )
    parser.add_argument("--num-classes", type=positive_int, help="classes of the head "
                        "(default: the model's)")
    parser.add_argument("--batches", type=positive_int, default=1,
                        help="batches to measure (default: 1)")
    add_options(parser, "seed", "lif_backend", "device", "json",
                seed={"default": 0, "help": "seed of random weights and input (default: 0)"},
                lif_backend={"default": "auto"})


def run(args: argparse.Namespace) -> int:
    """Build the model, measure it on the batches, print the table, write the JSON."""
    from models.app.errors import UserError
    from models.app.options import resolve_device
    from models.checkpoint import read_checkpoint
    from models.energy.measure import EnergyMeter

    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    checkpoint = read_checkpoint(args.checkpoint) if args.checkpoint is not None else None
    model_kwargs, in_chans = _from_training_config(args, checkpoint)
    if args.model is None:
        raise UserError(
            "--model is required unless --checkpoint was written by maxformer train "
            "(its config names the model)"
        )
    size = args.img_size or _default_input_size(args.model)
    num_classes = args.num_classes
    if args.dataset:
        loader, in_chans, num_classes = _dataset(args, size)
        batches = (images for images, _ in loader)
        source = f"{args.dataset} held-out images"
    model = create_model(
        args.model, num_classes=num_classes, in_chans=in_chans, T=args.T,
        lif_backend=args.lif_backend, model_kwargs=model_kwargs,
    )
    if not args.dataset:
        batches = _random_batches(model, args, size)
        source = "random input"
    if checkpoint is None:
        weights = "random weights (untrained: firing rates and energy are not the paper's)"
    else:
        load_weights(model, checkpoint, args.checkpoint)
        weights = f"weights from {args.checkpoint}"
    model.to(device)
    with EnergyMeter(model) as meter:
        for images in itertools.islice(batches, args.batches):
            model(images.to(device))
    report = meter.report()
    print(
        f"{args.model}: T={report.T}, {size}x{size} px, {source} (images: {report.images}), "
        f"{weights}, {report.params / 1e6:.2f} M parameters; energy per image:"
    )
    print(report.table())
    if args.json:
        summary = {"model": args.model, "input": source, "input_size": size, "weights": weights}
        args.json.write_text(json.dumps({**summary, **report.to_dict()}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _default_input_size(name: str) -> int:
    """Image side of model `name`'s pretrained config (its `input_size`, `(C, H, W)`)."""
    import timm

    check_model_name(name)
    return timm.models.get_pretrained_cfg(name).input_size[-1]


def _from_training_config(
    args: argparse.Namespace, checkpoint: dict | None
) -> tuple[dict, int | None]:
    """Fill `args.model`, `--T`, `--num-classes` and `--img-size` where not given from the
    config a `maxformer train` checkpoint saved; returns its model kwargs and input channels
    (`{}` and None for other checkpoints)."""
    from models.app.datasets import DATASETS

    config = checkpoint.get("config") if checkpoint is not None else None
    if not isinstance(config, dict):
        return {}, None
    info = DATASETS[config["dataset"]]
    args.model = args.model or config["model"]
    args.T = args.T if args.T is not None else config["T"]
    args.img_size = args.img_size or config["img_size"]
    if args.num_classes is None:
        args.num_classes = config["num_classes"] or info.num_classes
    kwargs = {"neuron": config.get("neuron", "lif"), **config["model_kwargs"]}
    return kwargs, info.in_chans


def _random_batches(model: nn.Module, args: argparse.Namespace, size: int) -> Iterator[Tensor]:
    """Standard-normal images `[B, C, S, S]`, or for a model of event frames (`event_input`,
    or no `T` to repeat an image over) Poisson event counts (mean 0.5) `[B, T, C, S, S]`."""
    from models.app.errors import UserError

    in_chans = model.in_chans
    frames = getattr(model, "event_input", False) or getattr(model, "T", None) is None
    if frames and args.T is None:
        raise UserError(f"{args.model} takes event frames [B, T, C, H, W]: give their number, --T")
    while True:
        if frames:
            yield torch.poisson(torch.full((args.batch_size, args.T, in_chans, size, size), 0.5))
        else:
            yield torch.randn(args.batch_size, in_chans, size, size)


def _dataset(args: argparse.Namespace, size: int) -> tuple[torch.utils.data.DataLoader, int, int]:
    """Loader of the held-out set of `args.dataset` (read by `models.app.data`), its
    input channels and classes."""
    from models.app.config import TrainConfig
    from models.app.data import build_datasets

    cfg = TrainConfig(
        model=args.model,
        T=args.T,
        dataset=args.dataset,
        data_dir=args.data_dir,
        img_size=size,
        batch_size=args.batch_size,
    )
    _, val_set, info = build_datasets(cfg)
    loader = torch.utils.data.DataLoader(val_set, batch_size=args.batch_size, shuffle=False)
    return loader, info.in_chans, info.num_classes
