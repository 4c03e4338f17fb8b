"""Whole-model benchmark: training step and inference speed, peak memory, and the bytes a
training step keeps for backward, for model presets with each neuron backend.

The bytes kept for backward are counted with ``torch.autograd.graph.saved_tensors_hooks``
(parameters excluded), so they do not depend on the device. ``--reference`` adds the row the
original code corresponds to: spikingjelly neurons (which keep their input and more, so
BatchNorm outputs are kept twice) and spikes saved as floats.

The rows of one model (its backends, and the reference) are timed in turns, so that a
busier moment of the machine falls on all of them alike.

    python -m benchmarks.bench_model --json model.json
    python -m benchmarks.bench_model --reference --variants eager channels_last fold
    python -m benchmarks.bench_model --models maxformer_10_384 --img-size 224 --batch-size 1 \\
        --memory-only --reference
"""

from __future__ import annotations

import argparse
import sys

import timm
import torch
from torch import nn

import models.zoo  # noqa: F401  (registers the zoo with timm)
from benchmarks.common import device_name, time_calls, write_json
from models.app.options import add_options, resolve_device
from models.fold import fold_batchnorm
from models.neurons import BACKENDS


def saved_bytes_by_module(model: nn.Module, x: torch.Tensor, depth: int | None = None
                          ) -> dict[str, int]:
    """What :func:`saved_bytes` counts, by the innermost module running when each tensor was
    saved (``""``: the model itself, a checkpointed stage's inputs say), its name cut to
    ``depth`` dotted parts (``stage1.0``: a block) when given; largest first."""
    model.train()
    running = [""]

    def leave(*_) -> None:
        running.pop()

    handles = []
    for name, module in model.named_modules():
        if name:
            label = ".".join(name.split(".")[:depth])
            handles.append(module.register_forward_pre_hook(
                lambda module, args, label=label: running.append(label)))
            handles.append(module.register_forward_hook(leave))
    totals: dict[str, int] = {}

    def count(t: torch.Tensor) -> torch.Tensor:
        totals[running[-1]] = totals.get(running[-1], 0) + t.numel() * t.element_size()
        return t

    excluded = {p.data_ptr() for p in model.parameters()}
    try:
        with torch.autograd.graph.saved_tensors_hooks(
            lambda t: t if t.data_ptr() in excluded else count(t), lambda t: t
        ):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors one training forward pass keeps for backward (no parameters)."""
    return sum(saved_bytes_by_module(model, x).values())


VARIANTS = ("eager", "channels_last", "fold", "compiled", "checkpointed", "bf16")
"""Candidate speed-ups, a row each: ``eager`` (as the models are), ``channels_last`` (model
and input in channels-last memory format), ``fold`` (inference with BatchNorm folded into the
convolutions, :func:`models.fold.fold_batchnorm`; training as ``eager``), ``compiled``
(forward and loss through ``torch.compile`` with inductor, its backward compiled with it, one
static shape; inference through the compiled model), ``checkpointed``
(``set_grad_checkpointing(True)``: each embedding and block keeps only its input and runs
again in backward), ``bf16`` (bf16 autocast, as ``--amp`` gives every row)."""


def build(name: str, backend: str, args: argparse.Namespace, device: torch.device,
          reference: bool, variant: str = "eager") -> tuple[dict, dict]:
    """A row (what is kept for backward) and the closures timing preset ``name`` with
    neurons on ``backend`` as ``variant`` (one of :data:`VARIANTS`): one training step, one
    inference pass."""
    model = timm.create_model(name, T=args.T, lif_backend=backend, **args.model_kwargs)
    model.pack_saved_spikes = args.pack and not reference
    model.to(device)
    x = torch.randn(args.batch_size, model.in_chans, args.img_size, args.img_size, device=device)
    if variant == "channels_last":
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model.set_grad_checkpointing(variant == "checkpointed")
    row = dict(
        model=name, backend=backend, reference=reference, variant=variant, T=args.T,
        batch=args.batch_size,
        img_size=args.img_size, params=sum(p.numel() for p in model.parameters()),
    )
    by_module = saved_bytes_by_module(model, x, args.module_depth)
    row["saved_mib"] = sum(by_module.values()) / 2**20
    if args.by_module:
        largest = list(by_module.items())[: args.by_module]
        row["saved_mib_by_module"] = {module or "(model)": size / 2**20
                                      for module, size in largest}
    target = torch.randint(0, model.num_classes, (args.batch_size,), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    compiled = variant == "compiled"
    step_model = torch.compile(model, dynamic=False) if compiled else model

    amp = args.amp or variant == "bf16"

    def loss_of(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            return nn.functional.cross_entropy(model(inputs), targets)

    step_loss = torch.compile(loss_of, dynamic=False) if compiled else loss_of

    def train_step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        step_loss(x, target).backward()
        optimizer.step()

    def infer():
        model.eval()
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                    enabled=amp):
            (folded if variant == "fold" else step_model)(x)

    folded = fold_batchnorm(model) if variant == "fold" else None

    return row, {"train": train_step, "infer": infer}


def measure(name: str, args: argparse.Namespace, device: torch.device) -> list[dict]:
    """The rows of preset ``name``: one per backend (and the reference), timed in turns."""
    runs = [(b, False, v) for b in args.lif_backend for v in args.variants]
    runs += [("spikingjelly", True, "eager")] if args.reference else []
    built = [build(name, backend, args, device, reference, variant)
             for backend, reference, variant in runs]
    rows = [row for row, _ in built]
    if args.memory_only:
        return rows
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train = time_calls({str(i): calls["train"] for i, (_, calls) in enumerate(built)}, device,
                       args.reps, warmup=2)
    for i, row in enumerate(rows):
        timing = train[str(i)]
        row.update(train_ms=timing.seconds * 1e3, train_img_per_s=args.batch_size / timing.seconds,
                   train_peak_mib=timing.peak_mib, first_step_s=timing.first_seconds)
    if not args.skip_inference:
        infer = time_calls({str(i): calls["infer"] for i, (_, calls) in enumerate(built)},
                           device, args.reps, warmup=2)
        for i, row in enumerate(rows):
            seconds = infer[str(i)].seconds
            row.update(infer_ms=seconds * 1e3, infer_img_per_s=args.batch_size / seconds)
    return rows


def format_row(row: dict) -> str:
    label = "reference (spikingjelly, no packing)" if row["reference"] else row["backend"]
    label += "" if row["variant"] == "eager" else f" {row['variant']}"
    text = f"{row['model']:<22} {label:<38} kept for backward {row['saved_mib']:8.1f} MiB"
    if "train_ms" in row:
        peak = "" if row["train_peak_mib"] is None else f", peak {row['train_peak_mib']:.0f} MiB"
        text += (
            f" | train {row['train_ms']:9.1f} ms ({row['train_img_per_s']:7.1f} img/s{peak};"
            f" first step {row['first_step_s']:.1f} s)"
        )
    if "infer_ms" in row:
        text += f" | infer {row['infer_ms']:8.1f} ms ({row['infer_img_per_s']:7.1f} img/s)"
    for name, mib in row.get("saved_mib_by_module", {}).items():
        text += f"\n    {mib:8.2f} MiB kept in {name}"
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=None,
                        help="presets (default: maxformer_10_384 on a GPU, maxformer_cifar on "
                             "the CPU)")
    add_options(
        parser, "lif_backend", "T", "batch_size", "img_size", "device", "json",
        lif_backend={"nargs": "+", "choices": [b for b in BACKENDS if b != "auto"],
                     "aliases": ("--backends",),
                     "help": "neuron backends (default: triton torch spikingjelly on a GPU, "
                     "numba torch spikingjelly on the CPU)"},
        T={"default": 4, "help": "time steps (default: 4)"},
        batch_size={"help": "batch size (default: 32 on a GPU, 8 on the CPU)"},
        img_size={"help": "image side (default: 224 on a GPU, 32 on the CPU)"},
    )
    parser.add_argument("--embed-dims", type=int, default=None,
                        help="override the presets' width (for quick runs)")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["eager"],
                        help="candidate speed-ups, a row per backend each (default: eager)")
    parser.add_argument("--pack", action=argparse.BooleanOptionalAction, default=True,
                        help="keep spikes saved for backward in 1 bit (the models' default; "
                             "--no-pack keeps them as they are)")
    parser.add_argument("--skip-inference", action="store_true",
                        help="time the training step only")
    parser.add_argument("--memory-only", action="store_true",
                        help="only count the bytes kept for backward")
    parser.add_argument("--by-module", type=int, default=0, metavar="N",
                        help="also list the N modules that keep the most for backward (the "
                             "innermost module running when a tensor is saved)")
    parser.add_argument("--module-depth", type=int, default=None, metavar="K",
                        help="with --by-module, name modules by their first K dotted parts "
                             "(2: embeddings and blocks; default: the innermost module)")
    parser.add_argument("--reference", action="store_true",
                        help="add the original code's configuration as a row per model")
    args = parser.parse_args(argv)
    gpu = resolve_device(args.device).type == "cuda"
    args.models = args.models or (["maxformer_10_384"] if gpu else ["maxformer_cifar"])
    args.lif_backend = args.lif_backend or (
        ["triton", "torch", "spikingjelly"] if gpu else ["numba", "torch", "spikingjelly"]
    )
    args.batch_size = args.batch_size or (32 if gpu else 8)
    args.img_size = args.img_size or (224 if gpu else 32)
    args.model_kwargs = {} if args.embed_dims is None else {"embed_dims": args.embed_dims}
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    if device.type == "cpu":
        print(f"CPU rows on {torch.get_num_threads()} threads", file=sys.stderr)
    result = dict(
        device=device_name(device), threads=torch.get_num_threads(),
        torch=torch.__version__, amp=args.amp, pack=args.pack, rows=[],
    )
    for name in args.models:
        for row in measure(name, args, device):
            result["rows"].append(row)
            print(format_row(row), flush=True)
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
