"""Whole-model benchmark: training step and inference speed, peak memory, and the bytes a
training step keeps for backward, for model presets with each neuron backend.

The bytes kept for backward are counted with ``torch.autograd.graph.saved_tensors_hooks``
(parameters excluded), so they do not depend on the device. ``--reference`` adds the row the
original code corresponds to: spikingjelly neurons (which keep their input and more, so
BatchNorm outputs are kept twice) and spikes saved as floats.

    python -m benchmarks.bench_model --json model.json
    python -m benchmarks.bench_model --models maxformer_10_384 --img-size 224 --batch 1 \\
        --memory-only --reference
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import timm
import torch
from torch import nn

import models  # noqa: F401  (registers the model zoo with timm)
from benchmarks.common import device_name, write_json
from models.neurons import BACKENDS
from models.spike_storage import kept_for_backward


def saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors one training forward pass keeps for backward (no parameters)."""
    model.train()
    return kept_for_backward(lambda: model(x), model.parameters())[1]


def seconds_per_call(fn, device: torch.device, reps: int) -> tuple[float, float]:
    """Median seconds of ``fn()`` after two warm-up calls, and the seconds of the first call
    (which includes compiling, under ``torch.compile``)."""
    times = []
    for _ in range(2 + reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:]), times[0]


def measure(
    name: str, backend: str, args: argparse.Namespace, device: torch.device,
    reference: bool = False,
) -> dict:
    """One row: speed and memory of preset ``name`` with neurons on ``backend``."""
    model = timm.create_model(name, T=args.T, lif_backend=backend, **args.model_kwargs)
    model.pack_saved_spikes = args.pack and not reference
    model.to(device)
    x = torch.randn(args.batch, model.in_chans, args.img_size, args.img_size, device=device)
    row = dict(
        model=name, backend=backend, reference=reference, T=args.T, batch=args.batch,
        img_size=args.img_size, params=sum(p.numel() for p in model.parameters()),
        saved_mib=saved_bytes(model, x) / 2**20,
    )
    if args.memory_only:
        return row
    target = torch.randint(0, model.num_classes, (args.batch,), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    step_model = torch.compile(model) if args.compile else model

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
            loss = nn.functional.cross_entropy(step_model(x), target)
        loss.backward()
        optimizer.step()

    def infer():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
            step_model(x)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model.train()
    train_s, first_s = seconds_per_call(train_step, device, args.reps)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    row.update(
        train_ms=train_s * 1e3, train_img_per_s=args.batch / train_s, train_peak_mib=peak,
        first_step_s=first_s,
    )
    if not args.skip_inference:
        model.eval()
        infer_s, _ = seconds_per_call(infer, device, args.reps)
        row.update(infer_ms=infer_s * 1e3, infer_img_per_s=args.batch / infer_s)
    return row


def format_row(row: dict) -> str:
    label = "reference (spikingjelly, no packing)" if row["reference"] else row["backend"]
    text = f"{row['model']:<22} {label:<38} kept for backward {row['saved_mib']:8.1f} MiB"
    if "train_ms" in row:
        peak = "" if row["train_peak_mib"] is None else f", peak {row['train_peak_mib']:.0f} MiB"
        text += (
            f" | train {row['train_ms']:9.1f} ms ({row['train_img_per_s']:7.1f} img/s{peak};"
            f" first step {row['first_step_s']:.1f} s)"
        )
    if "infer_ms" in row:
        text += f" | infer {row['infer_ms']:8.1f} ms ({row['infer_img_per_s']:7.1f} img/s)"
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=None,
                        help="presets (default: maxformer_10_384 on a GPU, maxformer_cifar on "
                             "the CPU)")
    parser.add_argument("--backends", nargs="+", choices=[b for b in BACKENDS if b != "auto"],
                        default=None,
                        help="neuron backends (default: triton torch spikingjelly on a GPU, "
                             "torch spikingjelly on the CPU)")
    parser.add_argument("--T", type=int, default=4, help="time steps (default: 4)")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size (default: 32 on a GPU, 4 on the CPU)")
    parser.add_argument("--img-size", type=int, default=None,
                        help="image side (default: 224 on a GPU, 32 on the CPU)")
    parser.add_argument("--embed-dims", type=int, default=None,
                        help="override the presets' width (for quick runs)")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--pack", action=argparse.BooleanOptionalAction, default=True,
                        help="keep spikes saved for backward in 1 bit (the models' default; "
                             "--no-pack keeps them as they are)")
    parser.add_argument("--skip-inference", action="store_true",
                        help="time the training step only")
    parser.add_argument("--memory-only", action="store_true",
                        help="only count the bytes kept for backward")
    parser.add_argument("--reference", action="store_true",
                        help="add the original code's configuration as a row per model")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = parser.parse_args(argv)
    gpu = torch.cuda.is_available()
    args.models = args.models or (["maxformer_10_384"] if gpu else ["maxformer_cifar"])
    args.backends = args.backends or (
        ["triton", "torch", "spikingjelly"] if gpu else ["torch", "spikingjelly"]
    )
    args.batch = args.batch or (32 if gpu else 4)
    args.img_size = args.img_size or (224 if gpu else 32)
    args.model_kwargs = {} if args.embed_dims is None else {"embed_dims": args.embed_dims}
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        print("no CUDA GPU: CPU rows only", file=sys.stderr)
    result = dict(
        device=device_name(device),
        torch=torch.__version__, amp=args.amp, compile=args.compile, pack=args.pack, rows=[],
    )
    for name in args.models:
        runs = [(backend, False) for backend in args.backends]
        runs += [("spikingjelly", True)] if args.reference else []
        for backend, reference in runs:
            result["rows"].append(measure(name, backend, args, device, reference))
            print(format_row(result["rows"][-1]), flush=True)
            write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
