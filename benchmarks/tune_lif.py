"""Sweep the Triton LIF kernels' launch settings on one shape.

The forward kernel is timed for each ``BLOCK_FORWARD`` x ``FORWARD_WARPS``, the backward
kernel for each ``TILE_ELEMENTS`` x ``MAX_BACKWARD_WARPS`` (the module constants of
``models.neurons.triton_backend``), each against the copy bandwidth measured in the same run
under the design's bytes model (forward: X in, S out; backward: X and dL/dS in, dL/dX out).
It needs a CUDA GPU; without one it runs under ``TRITON_INTERPRET=1`` (a check that it works,
its times say nothing).

    python -m benchmarks.tune_lif --T 4 --log2-neurons 24 --dtype bf16 --json tune.json
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

import torch

from benchmarks.bench_lif import DTYPES, copy_bandwidth
from benchmarks.common import device_name, time_calls, write_json
from models.app.options import add_options
from models.neurons import NeuronSpec
from models.neurons import triton_backend as kernels


def sweep(args: argparse.Namespace) -> dict:
    """Median time and share of the copy bandwidth of every launch setting."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bandwidth = copy_bandwidth(device, args.copy_mib << 20, reps=1)
    dtype = DTYPES[args.dtype]
    n = 1 << args.log2_neurons
    x = torch.randn(args.T, n, device=device).mul_(1.5).add_(0.5).to(dtype)
    grad = torch.randn_like(x)
    spec = NeuronSpec()
    passes = {"fwd": 2, "bwd": 3}
    runs = {
        "fwd": lambda: kernels.launch_forward(x, None, spec, False),
        "bwd": lambda: kernels.launch_backward(x, None, grad, None, spec),
    }
    settings = {
        "fwd": [("BLOCK_FORWARD", "FORWARD_WARPS"), itertools.product(args.blocks, args.warps)],
        "bwd": [("TILE_ELEMENTS", "MAX_BACKWARD_WARPS"), itertools.product(args.tiles, args.warps)],
    }
    rows = []
    for kernel, (names, values) in settings.items():
        defaults = [getattr(kernels, name) for name in names]
        for chosen in values:
            for name, value in zip(names, chosen, strict=True):
                setattr(kernels, name, value)
            seconds = time_calls({kernel: runs[kernel]}, device, reps=1)[kernel].seconds
            moved = passes[kernel] * x.numel() * x.element_size()
            rows.append(dict(
                kernel=kernel, **dict(zip(names, chosen, strict=True)), ms=seconds * 1e3,
                share_of_copy=moved / seconds / bandwidth,
                default=list(chosen) == defaults,
            ))
            print(f"{kernel} {dict(zip(names, chosen, strict=True))}: {seconds * 1e3:.4f} ms, "
                  f"{100 * rows[-1]['share_of_copy']:.1f}% of copy"
                  + (" (default)" if rows[-1]["default"] else ""), flush=True)
        for name, value in zip(names, defaults, strict=True):
            setattr(kernels, name, value)
    return dict(device=device_name(device), torch=torch.__version__, T=args.T, N=n,
                dtype=args.dtype, copy_gb_per_s=bandwidth / 1e9, rows=rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser, "T", "json", T={"default": 4, "aliases": ("--steps",),
                                        "help": "time steps T (default: 4)"})
    parser.add_argument("--log2-neurons", type=int, default=24, help="log2 of N (default: 24)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--blocks", type=int, nargs="+", default=[512, 1024, 2048, 4096],
                        help="forward BLOCK_FORWARD values")
    parser.add_argument("--tiles", type=int, nargs="+", default=[1024, 2048, 4096, 8192],
                        help="backward TILE_ELEMENTS values")
    parser.add_argument("--warps", type=int, nargs="+", default=[2, 4, 8],
                        help="FORWARD_WARPS / MAX_BACKWARD_WARPS values")
    parser.add_argument("--copy-mib", type=int, default=1024,
                        help="buffer size of the copy-bandwidth measurement (MiB)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        print("tune_lif needs a CUDA GPU, or TRITON_INTERPRET=1 to check that it runs",
              file=sys.stderr)
        return 2
    write_json(args.json, sweep(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
