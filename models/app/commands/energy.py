"""Energy of a model (45 nm): firing rates, MACs, SOPs and energy per layer, part and stage.

E = 4.6 pJ x MACs + 0.9 pJ x SOPs. --convention says how MACs and SOPs are counted:
  ours          (default) the paper's Table 9: SOPs = input firing rate x T x FLOPs of every
                convolution, linear layer and spike product; layers on real values (the first,
                on pixels) count as MACs, a static image once, event frames T times;
                BatchNorm folded
  spikformer    Spikformer (ICLR 2023) as its authors' energy code counts: the first layer's
                MACs T times, biases included, sums of spike maps as that many accumulates,
                SSA's K^T V gated by the sparser of K and V
  sdt           the Spike-driven Transformer (NeurIPS 2023), Table 1: as ours, but the first
                layer's MACs T times
  syops         the syops counter, module by module: also BatchNorm, pooling, activations and
                one AC per neuron input; no products of two activations
  spikingjelly  spikingjelly 2.0's op_counter: exact synaptic operations (padding taps
                skipped, spike x spike products as the pairs of ones that meet), BatchNorm MACs
docs/energy.md gives each convention's rules and sources. The ANN counterpart runs the same
layers once: 4.6 pJ x FLOPs of one step.

Firing rates depend on the weights and the input. Without --checkpoint the weights are random
(their firing rates are near zero; the table and the JSON say so) and the input is random
unless --dataset is given. A checkpoint of maxformer train names its model and dataset: the
energy is measured on that dataset's held-out images (digits need no data folder) unless
--dataset or --random-input says otherwise; other checkpoints need one of the two.

Examples:
  maxformer energy --model maxformer_cifar --T 4
  maxformer energy --checkpoint runs/maxformer_cifar-digits-20250101-120000/checkpoint-best.pt
  maxformer energy --model maxformer_10_384 --checkpoint 10-384-T4.pth.tar --dataset imagenet \\
      --data-dir /data/imagenet --batches 10 --json energy.json
  maxformer energy --model maxformer_event --T 16 --img-size 128
  maxformer energy --model sdt_2_512 --convention sdt
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from models.app.options import add_options, positive_int, show_progress

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

CONVENTIONS = ("ours", "spikformer", "sdt", "syops", "spikingjelly")
"""The names of ``models.energy.CONVENTIONS`` (here without importing torch)."""

RANDOM_WEIGHTS = "random weights (untrained: firing rates and energy are not a trained network's)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``maxformer energy``."""
    add_options(
        parser, "model", "T", "checkpoint", "dataset", "data_dir", "img_size", "batch_size",
        model={"help": "timm model name, e.g. maxformer_cifar (default: the one a training "
               "checkpoint of maxformer train names in its config, with its T, width and input "
               "size)"},
        T={"help": "time steps (default: the model's)"},
        checkpoint={"help": "weights (default: random weights)"},
        dataset={"help": "measure on held-out images of this dataset (default: the dataset a "
                 "training checkpoint names)"},
        img_size={"help": "image height and width (default: the model's pretrained_cfg "
                  "input_size)"},
        batch_size={"default": 1, "help": "images per batch (default: 1)"},
    )
    parser.add_argument("--random-input", action="store_true",
                        help="measure on random input (standard-normal images, or Poisson event "
                        "counts for event models) instead of a dataset")
    parser.add_argument("--num-classes", type=positive_int, help="classes of the head "
                        "(default: the model's)")
    parser.add_argument("--batches", type=positive_int, default=1,
                        help="batches to measure (default: 1)")
    parser.add_argument("--convention", choices=CONVENTIONS, default="ours", metavar="NAME",
                        help="how MACs and SOPs are counted: " + ", ".join(CONVENTIONS)
                        + " (default: ours; see above)")
    add_options(parser, "seed", "lif_backend", "device", "json", "no_progress",
                seed={"default": 0, "help": "seed of random weights and input (default: 0)"},
                lif_backend={"default": "auto"})


def run(args: argparse.Namespace) -> int:
    """Build the model, measure it on the batches, print the table, write the JSON."""
    import torch
    from tqdm import tqdm

    from models.app.errors import UserError
    from models.app.files import atomic_write_text, check_writable
    from models.app.modeling import check_input, create_model, load_weights
    from models.app.options import resolve_device
    from models.checkpoint import read_checkpoint
    from models.energy.measure import EnergyMeter

    if args.json is not None:
        check_writable(args.json)
    if args.random_input and args.dataset:
        raise UserError("--random-input and --dataset exclude each other; give one")
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    checkpoint = read_checkpoint(args.checkpoint) if args.checkpoint is not None else None
    saved = _from_training_config(args, checkpoint)
    if args.model is None:
        raise UserError(
            "--model is required unless --checkpoint was written by maxformer train "
            "(its config names the model)"
        )
    if checkpoint is not None and not (args.dataset or args.random_input):
        raise UserError(
            f"{args.checkpoint} names no dataset: give --dataset (and --data-dir) to measure "
            "the firing rates of its trained weights on real images, or --random-input"
        )
    size = args.img_size or _default_input_size(args.model)
    num_classes, in_chans = args.num_classes, saved.get("in_chans")
    if args.dataset:
        loader, in_chans, num_classes = _dataset(args, size, saved.get("config"))
        batches = (images for images, _ in loader)
        source = f"{args.dataset} held-out images"
    config = saved.get("config", {})
    model = create_model(
        args.model, num_classes=num_classes, in_chans=in_chans, T=args.T,
        neuron=config.get("neuron", "lif"), lif_backend=args.lif_backend,
        model_kwargs=config.get("model_kwargs"),
    )
    if not args.dataset:
        batches = _random_batches(model, args, size)
        source = "random input"
    if checkpoint is None:
        weights = RANDOM_WEIGHTS
    else:
        load_weights(model, checkpoint, args.checkpoint)
        weights = f"weights from {args.checkpoint}"
    model.to(device)
    first = next(batches)
    check_input(model, first[0], f"{source} at img_size {size}")
    batches = itertools.chain([first], batches)
    one_step = getattr(model, "T", None) is None and first.dim() == 4
    if one_step:
        print(f"{args.model} has no T and takes images [B, C, H, W]: counted as one time step")
    measured = tqdm(itertools.islice(batches, args.batches), total=args.batches, desc="energy",
                    leave=False, disable=not show_progress(args))
    with EnergyMeter(model, T=1 if one_step else None, convention=args.convention) as meter:
        for images in measured:
            model(images.to(device))
    report = meter.report()
    title = (f"{args.model} ({args.convention} convention): T={report.T}, {size}x{size} px, "
             f"{source} (images: "
             f"{report.images}), {weights}, {report.params / 1e6:.2f} M parameters; per image:")
    print(report.table(title))
    if args.json:
        summary = {"model": args.model, "input": source, "input_size": size, "weights": weights,
                   "trained": checkpoint is not None}
        atomic_write_text(args.json, json.dumps({**summary, **report.to_dict()}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _default_input_size(name: str) -> int:
    """Image side of model `name`'s pretrained config (its `input_size`, `(C, H, W)`)."""
    import timm

    from models.app.modeling import check_model_name

    check_model_name(name)
    return timm.models.get_pretrained_cfg(name).input_size[-1]


def _from_training_config(args: argparse.Namespace, checkpoint: dict | None) -> dict[str, Any]:
    """Fill `args.model`, `--T`, `--num-classes`, `--img-size` and, unless `--random-input`,
    `--dataset` and `--data-dir` where not given from the config a `maxformer train`
    checkpoint saved; returns that config, its model kwargs and input channels (`{}` for
    other checkpoints)."""
    from models.app.config import build_config, check_saved_config, dataset_info

    if checkpoint is None or "config" not in checkpoint:
        return {}
    config = check_saved_config(checkpoint["config"], str(args.checkpoint))
    info = dataset_info(build_config(config, {}))
    args.model = args.model or config["model"]
    args.T = args.T if args.T is not None else config["T"]
    args.img_size = args.img_size or config["img_size"]
    if args.num_classes is None:
        args.num_classes = config["num_classes"] or info.num_classes
    if not args.random_input and args.dataset is None:
        args.dataset = config["dataset"]
        args.data_dir = args.data_dir or config["data_dir"]
    return {"config": config, "in_chans": info.in_chans}


def _random_batches(model: nn.Module, args: argparse.Namespace, size: int) -> Iterator[Tensor]:
    """Standard-normal images `[B, C, S, S]`, or for a model of event frames (`event_input`,
    or no `T` to repeat an image over) Poisson event counts (mean 0.5) `[B, T, C, S, S]`."""
    import torch

    from models.app.errors import UserError

    in_chans = model.in_chans
    frames = getattr(model, "event_input", False) or (
        getattr(model, "T", None) is None and args.T is not None)
    if frames and args.T is None:
        raise UserError(f"{args.model} takes event frames [B, T, C, H, W]: give their number, --T")
    while True:
        if frames:
            yield torch.poisson(torch.full((args.batch_size, args.T, in_chans, size, size), 0.5))
        else:
            yield torch.randn(args.batch_size, in_chans, size, size)


def _dataset(
    args: argparse.Namespace, size: int, saved: dict | None
) -> tuple[torch.utils.data.DataLoader, int, int]:
    """Loader of the held-out set of `args.dataset` (read by `models.app.data`, with the
    preprocessing of the training config `saved` when there is one), its input channels and
    classes."""
    import torch

    from models.app.config import TrainConfig, build_config
    from models.app.data import build_datasets

    settings = {"T": args.T, "dataset": args.dataset, "data_dir": args.data_dir,
                "img_size": size, "batch_size": args.batch_size}
    if saved is not None and saved["dataset"] == args.dataset:
        cfg = build_config(saved, settings)
    else:
        cfg = TrainConfig(model=args.model, **settings)
    _, val_set, info = build_datasets(cfg)
    loader = torch.utils.data.DataLoader(val_set, batch_size=args.batch_size, shuffle=False)
    return loader, info.in_chans, info.num_classes
