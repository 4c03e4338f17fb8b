"""Peak memory of a converted network run over T steps in chunks (state carried) against one
call, with and without gradients.

Each row runs in a fresh process: a ``maxformer_cifar`` ANN (random weights, ``--embed-dims``)
converted with noise as calibration images, ``--batch-size`` noise images of ``--img-size``,
``models.conversion.forward_in_chunks`` at each T, and, with gradients, the backward of one
logit to the input. On the CPU the peak is the process's peak resident set (``ru_maxrss``,
so it includes what torch and the imports hold: compare rows, not the absolute value); on a
GPU, ``torch.cuda.max_memory_allocated``.

    python -m benchmarks.bench_chunks --T 32 64 128 256 --json chunks.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import timm
import torch

import models.zoo  # noqa: F401  (registers the zoo with timm)
from benchmarks.common import device_name, write_json
from models.app.options import add_options, resolve_device
from models.conversion import convert, forward_in_chunks


def measure_one(args: argparse.Namespace) -> dict:
    """One row, in this process: the peak memory (MiB) of one run and its wall time."""
    device = resolve_device(args.device)
    torch.manual_seed(0)
    ann = timm.create_model("maxformer_cifar", neuron="relu", T=1, in_chans=1, num_classes=10,
                            embed_dims=args.embed_dims, mixers=("identity", "dwc3", "dwc3"),
                            lif_backend=args.lif_backend or "auto").to(device).eval()
    x = torch.randn(args.batch_size, 1, args.img_size, args.img_size, device=device)
    snn = convert(ann, [x], backend=args.lif_backend or "auto")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    with torch.set_grad_enabled(args.grad):
        images = x.clone().requires_grad_(args.grad)
        logits = forward_in_chunks(snn, images, args.one_T, args.chunk or args.one_T)
        if args.grad:
            logits[:, 0].sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"T": args.one_T, "chunk": args.chunk or args.one_T, "grad": args.grad,
            "peak_mib": peak, "peak_before_run_mib": before,
            "seconds": time.perf_counter() - start}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_options(
        parser, "lif_backend", "batch_size", "img_size", "device", "json",
        batch_size={"default": 32, "help": "images (default: 32)"},
        img_size={"default": 16, "help": "image side (default: 16)"},
    )
    parser.add_argument("--T", type=int, nargs="+", default=[32, 64, 128, 256],
                        help="time steps (default: 32 64 128 256)")
    parser.add_argument("--chunk", type=int, default=32, help="steps per chunk (default: 32)")
    parser.add_argument("--embed-dims", type=int, default=32, help="width (default: 32)")
    parser.add_argument("--one-T", type=int, help=argparse.SUPPRESS)  # a child's row
    parser.add_argument("--grad", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one_T is not None:
        print(json.dumps(measure_one(args)))
        return 0
    result = dict(device=device_name(resolve_device(args.device)), torch=torch.__version__,
                  batch_size=args.batch_size, img_size=args.img_size,
                  embed_dims=args.embed_dims, rows=[])
    passed = [f"--{k}={v}" for k, v in (
        ("batch-size", args.batch_size), ("img-size", args.img_size), ("device", args.device),
        ("embed-dims", args.embed_dims), ("lif-backend", args.lif_backend)) if v is not None]
    for grad in (False, True):
        for T in args.T:
            for chunk in (args.chunk, 0) if args.chunk < T else (0,):  # 0: one call
                child = [sys.executable, "-m", "benchmarks.bench_chunks", *passed,
                         f"--one-T={T}", f"--chunk={chunk}", *(["--grad"] if grad else [])]
                done = subprocess.run(child, capture_output=True, text=True)
                if done.returncode:
                    raise RuntimeError(f"{' '.join(child)} failed:\n{done.stderr[-2000:]}")
                row = json.loads(done.stdout.splitlines()[-1])
                result["rows"].append(row)
                print(f"T={T:4d} chunk {row['chunk']:4d} {'grad' if grad else 'no grad'}: peak "
                      f"{row['peak_mib']:8.0f} MiB ({row['seconds']:.1f} s)", flush=True)
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
