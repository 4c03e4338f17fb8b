"""Race the multi-step LIF backends: ours (``triton``, ``torch``) against spikingjelly.

Rows: the neuron layers of ``maxformer_10_384`` (batch 64, T=4; layers of equal size are
timed once) and a sweep over T and the number of neurons N, in fp32/bf16/fp16, forward only
and forward+backward. Each row gives the median time, the bandwidth achieved under the bytes
model of the design (forward reads X and writes S; backward reads X and dL/dS and writes
dL/dX), its share of the copy bandwidth measured in the same run, and the peak memory (CUDA
only). On a machine without a GPU it runs the CPU rows (``torch`` and spikingjelly's CPU
path) and says so.

spikingjelly's baselines: ``spikingjelly`` is ``LIFNode(step_mode="m")`` as a model uses it
(on a GPU its automatic path: the native CUDA extension when built, else Triton; for fp16
and bf16 inputs it falls back to its torch reference); on a GPU, for fp16 and bf16,
``spikingjelly-mp`` is its explicit-precision Triton kernel (state stored in the input's
dtype, computed in fp32). Speed-ups are against the faster of the two.

    python -m benchmarks.bench_lif --json lif.json
    python -m benchmarks.bench_lif --steps 4 --log2-neurons 22 --dtypes fp32 --modes fwd+bwd
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch

from benchmarks.common import device_name, write_json
from models.neurons import NeuronSpec, neuron_multistep

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("fwd", "fwd+bwd")


def median_seconds(
    fns: dict[str, Callable[[], object]], device: torch.device, reps: int
) -> dict[str, tuple[float, float | None]]:
    """Median wall time and peak memory (MiB, CUDA only) of each closure.

    CUDA: ``triton.testing.do_bench``, one closure after the other. CPU: after one warm-up
    call each, the closures take turns ``reps`` times, so that a slower or busier moment of
    the machine falls on all of them alike.
    """
    if device.type == "cuda":
        import triton.testing

        results = {}
        for name, fn in fns.items():
            torch.cuda.reset_peak_memory_stats()
            ms = triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
            results[name] = (ms / 1e3, torch.cuda.max_memory_allocated() / 2**20)
        return results
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(t), None) for name, t in times.items()}


def copy_bandwidth(device: torch.device, nbytes: int, reps: int) -> float:
    """Bytes per second of ``dst.copy_(src)``, counting bytes read and written."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).normal_()
    dst = torch.empty_like(src)
    seconds, _ = median_seconds({"copy": lambda: dst.copy_(src)}, device, reps)["copy"]
    return 2 * nbytes / seconds


def moved_bytes(steps: int, neurons: int, dtype: torch.dtype, mode: str) -> int:
    """The design's floor: forward 2 passes (X in, S out), backward 3 (X, dL/dS in, dL/dX out)."""
    passes = 2 if mode == "fwd" else 5
    return passes * steps * neurons * torch.empty(0, dtype=dtype).element_size()


SPIKINGJELLY_BASELINES = ("spikingjelly", "spikingjelly-mp")


def spikingjelly_mixed_precision(x: torch.Tensor) -> torch.Tensor:
    """Spikes ``[T, N]`` of spikingjelly's explicit-precision Triton LIF (CUDA): the default
    neuron, state stored in ``x.dtype``, forward and backward computed in fp32."""
    from spikingjelly.activation_based import functional, surrogate

    spec = NeuronSpec()
    spikes, _, _ = functional.lif_multi_step(
        x, torch.zeros(x.shape[1:], dtype=x.dtype, device=x.device), float(spec.tau),
        spec.decay_input, spec.v_threshold, spec.v_reset, surrogate.Sigmoid(alpha=spec.alpha),
        spec.detach_reset, False,
        neuron_storage=x.dtype, neuron_fwd="fp32", neuron_bwd="fp32",
    )
    return spikes


def neuron_step(backend: str, x: torch.Tensor, grad: torch.Tensor, mode: str) -> Callable:
    """A closure running one neuron call (and its backward) on ``x`` ``[T, N]``."""
    spec = NeuronSpec()
    if backend == "spikingjelly-mp":
        fire = spikingjelly_mixed_precision
    else:
        def fire(inputs):
            return neuron_multistep(inputs, spec, backend)[0]
    if mode == "fwd":
        def step():
            with torch.no_grad():
                fire(x)
        return step
    leaf = x.detach().requires_grad_()

    def step():
        leaf.grad = None
        fire(leaf).backward(grad)
    return step


def maxformer_neuron_sizes(batch: int, img_size: int = 224) -> list[tuple[str, int]]:
    """``(layer name, neurons per time step)`` of every neuron layer of ``maxformer_10_384``."""
    import timm

    import models  # noqa: F401  (registers the model zoo with timm)
    from models.neurons.modules import MultiStepLIF

    model = timm.create_model("maxformer_10_384", T=1, lif_backend="torch")
    sizes: list[tuple[str, int]] = []
    hooks = [
        module.register_forward_hook(
            lambda mod, args, out, name=name: sizes.append((name, args[0][0].numel() * batch))
        )
        for name, module in model.named_modules()
        if isinstance(module, MultiStepLIF)
    ]
    with torch.no_grad():
        model(torch.zeros(1, 3, img_size, img_size))
    for hook in hooks:
        hook.remove()
    return sizes


def maxformer_shapes(batch: int) -> list[tuple[str, int, int, int]]:
    """``(label, T, N, layers)``: the distinct neuron-layer sizes of ``maxformer_10_384`` at
    T=4, with how many layers have each (the first such layer names the row)."""
    first: dict[int, str] = {}
    layers: dict[int, int] = {}
    for name, n in maxformer_neuron_sizes(batch):
        first.setdefault(n, name)
        layers[n] = layers.get(n, 0) + 1
    return [
        (f"maxformer_10_384 b{batch} {first[n]} x{layers[n]}", 4, n, layers[n]) for n in first
    ]


def mixed_precision_runs(device: torch.device) -> bool:
    """Whether spikingjelly's explicit-precision Triton path runs on ``device`` (CUDA only);
    when it does not, says why on stderr."""
    if device.type != "cuda":
        return False
    try:
        spikingjelly_mixed_precision(torch.ones(2, 64, dtype=torch.bfloat16, device=device))
    except Exception as error:
        print(f"spikingjelly-mp left out: {type(error).__name__}: {error}", file=sys.stderr)
        return False
    return True


def backends_for(device: torch.device, dtype: torch.dtype, mixed_precision: bool) -> list[str]:
    """The backends raced on ``device`` for inputs of ``dtype``."""
    if device.type != "cuda":
        return ["torch", "spikingjelly"]
    half = dtype in (torch.float16, torch.bfloat16)
    return ["triton", "torch", "spikingjelly"] + (
        ["spikingjelly-mp"] if half and mixed_precision else []
    )


def benchmark(args: argparse.Namespace, on_row: Callable[[dict], None] = lambda row: None) -> dict:
    """Time every shape, dtype, mode and backend; ``on_row`` sees each row as it is made."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bandwidth = copy_bandwidth(device, args.copy_mib << 20, args.reps)
    mixed_precision = mixed_precision_runs(device)
    shapes = [
        (f"sweep T={t} N=2^{k}", t, 1 << k, 1) for t in args.steps for k in args.log2_neurons
    ]
    if args.maxformer:
        shapes = maxformer_shapes(args.batch) + shapes
    result = dict(
        device=device_name(device),
        gpu=device.type == "cuda",
        torch=torch.__version__,
        copy_gb_per_s=bandwidth / 1e9,
        rows=[],
    )
    for label, steps, neurons, layers in shapes:
        for dtype_name in args.dtypes:
            dtype = DTYPES[dtype_name]
            if device.type == "cpu" and dtype != torch.float32:
                continue
            x = torch.randn(steps, neurons, device=device).mul_(1.5).add_(0.5).to(dtype)
            grad = torch.randn_like(x)
            for mode in args.modes:
                steps_by_backend = {
                    b: neuron_step(b, x, grad, mode)
                    for b in backends_for(device, dtype, mixed_precision)
                }
                timed = median_seconds(steps_by_backend, device, args.reps)
                for backend, (seconds, peak) in timed.items():
                    achieved = moved_bytes(steps, neurons, dtype, mode) / seconds
                    result["rows"].append(dict(
                        shape=label, T=steps, N=neurons, layers=layers, dtype=dtype_name,
                        mode=mode, backend=backend, ms=seconds * 1e3, gb_per_s=achieved / 1e9,
                        share_of_copy=achieved / bandwidth, peak_mib=peak,
                    ))
                    print(format_row(result["rows"][-1]), flush=True)
                    on_row(result)
    return result


def format_row(row: dict) -> str:
    peak = "" if row["peak_mib"] is None else f" {row['peak_mib']:9.1f} MiB"
    return (
        f"{row['shape']:<58} {row['dtype']:>4} {row['mode']:>7} {row['backend']:>15} "
        f"{row['ms']:10.3f} ms {row['gb_per_s']:8.1f} GB/s {100 * row['share_of_copy']:6.1f}%"
        f"{peak}"
    )


def speedups(rows: list[dict]) -> list[str]:
    """``torch``/``triton`` against the faster spikingjelly baseline, row by row."""
    groups: dict[tuple, dict[str, float]] = {}
    for r in rows:
        groups.setdefault((r["shape"], r["dtype"], r["mode"]), {})[r["backend"]] = r["ms"]
    lines = []
    for (shape, dtype, mode), times in groups.items():
        baselines = {b: ms for b, ms in times.items() if b in SPIKINGJELLY_BASELINES}
        if not baselines:
            continue
        best = min(baselines, key=baselines.get)
        for backend, ms in times.items():
            if backend not in SPIKINGJELLY_BASELINES:
                lines.append(f"{shape} {dtype} {mode}: {backend} is "
                             f"{baselines[best] / ms:.2f}x {best}")
    return lines


def model_totals(rows: list[dict]) -> list[str]:
    """All neuron layers of ``maxformer_10_384`` together: each size's time times its layers."""
    totals: dict[tuple, float] = {}
    for r in rows:
        if r["shape"].startswith("maxformer_10_384"):
            key = (r["dtype"], r["mode"], r["backend"])
            totals[key] = totals.get(key, 0.0) + r["ms"] * r["layers"]
    return [
        f"maxformer_10_384, all neuron layers, {dtype} {mode}: {backend} {ms:.2f} ms"
        for (dtype, mode, backend), ms in totals.items()
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16],
                        help="time steps T of the sweep (default: 1 2 4 8 16)")
    parser.add_argument("--log2-neurons", type=int, nargs="+", default=None,
                        help="log2 of the neurons N of the sweep (default: 16 18 ... 26 on a GPU, "
                             "16 18 20 22 on the CPU)")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=list(DTYPES),
                        help="input dtypes (the CPU runs fp32 only)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--maxformer", action=argparse.BooleanOptionalAction, default=True,
                        help="add the neuron layers of maxformer_10_384 (default: on)")
    parser.add_argument("--batch", type=int, default=64, help="batch of the maxformer rows")
    parser.add_argument("--reps", type=int, default=9, help="timed repetitions on the CPU")
    parser.add_argument("--copy-mib", type=int, default=1024,
                        help="buffer size of the copy-bandwidth measurement (MiB)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = parser.parse_args(argv)
    if args.log2_neurons is None:
        top = 26 if torch.cuda.is_available() else 22
        args.log2_neurons = list(range(16, top + 1, 2))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU: running the CPU rows (torch backend and spikingjelly's CPU path); "
              "the triton rows need a GPU", file=sys.stderr)
    result = benchmark(args, on_row=lambda partial: write_json(args.json, partial))
    write_json(args.json, result)
    print(f"copy bandwidth: {result['copy_gb_per_s']:.1f} GB/s on {result['device']}")
    for line in speedups(result["rows"]) + model_totals(result["rows"]):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
