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
  maxformer energy --model maxformer_event --T 16 --input-size 128
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from models.training.modeling import check_model_name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``maxformer energy``."""
    parser.add_argument(
        "--model",
        help="timm model name, e.g. maxformer_cifar (default: the one a training checkpoint "
        "of maxformer train names in its config, with its T, width and input size)",
    )
    parser.add_argument("--T", type=int, help="time steps (default: the model's)")
    parser.add_argument("--num-classes", type=int, help="classes of the head (default: model's)")
    parser.add_argument("--checkpoint", type=Path, help="weights (default: random weights)")
    parser.add_argument(
        "--dataset", help="measure on held-out images of this dataset (as in maxformer eval)"
    )
    parser.add_argument("--data-dir", help="folder holding the dataset")
    parser.add_argument(
        "--input-size", type=int, metavar="S",
        help="image height and width (default: the model's pretrained_cfg input_size)",
    )
    parser.add_argument("--batch-size", type=int, default=1, help="images per batch (1)")
    parser.add_argument("--batches", type=int, default=1, help="batches to measure (1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of random weights and input")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--json", type=Path, help="also write the report to this JSON file")


def run(args: argparse.Namespace) -> int:
    """Build the model, measure it on the batches, print the table, write the JSON."""
    from models.energy.measure import EnergyMeter
    from models.training.errors import UserError

    for flag, value in (("--batch-size", args.batch_size), ("--batches", args.batches)):
        if value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    if args.T is not None and args.T < 1:
        raise UserError(f"--T must be at least 1, got {args.T}")
    torch.manual_seed(args.seed)
    checkpoint = _read(args.checkpoint)
    model_kwargs, in_chans = _from_training_config(args, checkpoint)
    if args.model is None:
        raise UserError(
            "--model is required unless --checkpoint was written by maxformer train "
            "(its config names the model)"
        )
    size = args.input_size or _default_input_size(args.model)
    if args.dataset:
        loader, in_chans, num_classes = _dataset(args, size)
        model = _create_model(args, num_classes, in_chans, model_kwargs)
        batches = (images for images, _ in loader)
        source = f"{args.dataset} held-out images"
    else:
        model = _create_model(args, args.num_classes, in_chans, model_kwargs)
        batches = _random_batches(model, args, size)
        source = "random input"
    weights = _load_weights(model, checkpoint, args.checkpoint)
    model.to(args.device)
    with EnergyMeter(model) as meter:
        for images in itertools.islice(batches, args.batches):
            model(images.to(args.device))
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

    import models  # noqa: F401  (registers the zoo)

    check_model_name(name)
    return timm.models.get_pretrained_cfg(name).input_size[-1]


def _read(path: Path | None) -> dict | None:
    """The checkpoint at `path` (weights-only unpickling), or None without one."""
    from models import CheckpointError
    from models.checkpoint import read_checkpoint
    from models.training.errors import UserError

    if path is None:
        return None
    try:
        return read_checkpoint(path)
    except (FileNotFoundError, CheckpointError) as err:
        raise UserError(f"{path}: {err}") from err


def _from_training_config(
    args: argparse.Namespace, checkpoint: dict | None
) -> tuple[dict, int | None]:
    """Fill `args.model`, `--T`, `--num-classes` and `--input-size` where not given from the
    config a `maxformer train` checkpoint saved; returns its model kwargs and input channels
    (`{}` and None for other checkpoints)."""
    from models.training.data import INFO

    config = checkpoint.get("config") if checkpoint is not None else None
    if not isinstance(config, dict):
        return {}, None
    info = INFO[config["dataset"]]
    args.model = args.model or config["model"]
    args.T = args.T if args.T is not None else config["T"]
    args.input_size = args.input_size or config["img_size"]
    if args.num_classes is None:
        args.num_classes = config["num_classes"] or info.num_classes
    return dict(config["model_kwargs"]), info.in_chans


def _create_model(
    args: argparse.Namespace, num_classes: int | None, in_chans: int | None, model_kwargs: dict
) -> nn.Module:
    """`timm.create_model(args.model, T=..., num_classes=..., lif_backend="torch", ...)`."""
    import timm

    from models.training.errors import UserError

    check_model_name(args.model)
    kwargs = {**model_kwargs, "lif_backend": "torch"}
    for key, value in (("T", args.T), ("num_classes", num_classes), ("in_chans", in_chans)):
        if value is not None:
            kwargs[key] = value
    try:
        return timm.create_model(args.model, **kwargs)
    except (TypeError, ValueError) as err:
        raise UserError(f"cannot build {args.model} with {kwargs}: {err}") from err


def _load_weights(model: nn.Module, checkpoint: dict | None, path: Path | None) -> str:
    """Load `checkpoint` (read from `path`; strict) into `model`; returns how the weights are
    described."""
    from models import CheckpointError, load_checkpoint
    from models.training.errors import UserError

    if checkpoint is None:
        return "random weights (untrained: firing rates and energy are not the paper's)"
    try:
        load_checkpoint(model, checkpoint, strict=True)
    except CheckpointError as err:
        raise UserError(f"{path}: {err}") from err
    return f"weights from {path}"


def _random_batches(model: nn.Module, args: argparse.Namespace, size: int) -> Iterator[Tensor]:
    """Standard-normal images `[B, C, S, S]`, or for a model of event frames (`event_input`,
    or no `T` to repeat an image over) Poisson event counts (mean 0.5) `[B, T, C, S, S]`."""
    from models.training.errors import UserError

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
    """Loader of the held-out set of `args.dataset` (read by `models.training.data`), its
    input channels and classes."""
    from models.training.config import TrainConfig
    from models.training.data import build_datasets

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
