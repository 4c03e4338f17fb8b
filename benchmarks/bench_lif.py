"""Race the multi-step LIF backends: ours (``triton``, ``numba``, ``torch``) against spikingjelly.

Rows: the neuron layers of ``maxformer_10_384`` (batch 64, T=4; layers of equal size are
timed once) and a sweep over T and the number of neurons N, in fp32/bf16/fp16, forward only
and forward+backward. Each row gives the median time, the bandwidth achieved under the bytes
model of the design (forward reads X and writes S; backward reads X and dL/dS and writes
dL/dX), and its share of two copies timed in the same turns as the backends, moving the same
bytes: into existing buffers (``copy``) and into fresh tensors (``allocating copy``:
``x.clone()``, and for backward ``x + g``), whose first touch of new memory costs page faults
on the CPU. It also gives the peak memory (CUDA) or the minor page faults of one call (CPU).
On a machine without a GPU (or with ``--device cpu``) it runs the CPU rows (``numba``,
``torch`` and spikingjelly's CPU path).

spikingjelly's baselines: ``spikingjelly`` is ``LIFNode(step_mode="m")`` as a model uses it
(on a GPU its automatic path: the native CUDA extension when built, else Triton; for fp16
and bf16 inputs it falls back to its torch reference); on a GPU, for fp16 and bf16,
``spikingjelly-mp`` is its explicit-precision Triton kernel (state stored in the input's
dtype, computed in fp32). Speed-ups are against the faster of the two.

    python -m benchmarks.bench_lif --json lif.json
    python -m benchmarks.bench_lif --T 4 --log2-neurons 22 --dtypes fp32 --modes fwd+bwd
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

from benchmarks.common import device_name, time_calls, write_json
from models.app.options import add_options, resolve_device
from models.neurons import BACKENDS, NeuronSpec, neuron_multistep

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("fwd", "fwd+bwd")
REFERENCES = ("copy", "allocating copy")


def copy_bandwidth(device: torch.device, nbytes: int, reps: int) -> float:
    """Bytes per second of ``dst.copy_(src)``, counting bytes read and written."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).normal_()
    dst = torch.zeros_like(src)
    return 2 * nbytes / time_calls({"copy": lambda: dst.copy_(src)}, device, reps)["copy"].seconds


def reference_steps(x: torch.Tensor, grad: torch.Tensor, mode: str) -> dict[str, Callable]:
    """Copies moving the bytes of a neuron call on ``x``: forward reads one tensor and writes
    one; forward+backward also reads two and writes one. ``copy`` writes into buffers that
    already exist, ``allocating copy`` into fresh tensors, as the neuron does."""
    first, second = torch.zeros_like(x), torch.zeros_like(x)
    if mode == "fwd":
        return {"copy": lambda: first.copy_(x), "allocating copy": lambda: x.clone()}
    return {
        "copy": lambda: (first.copy_(x), torch.add(x, grad, out=second)),
        "allocating copy": lambda: (x.clone(), torch.add(x, grad)),
    }


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

    import models.zoo  # noqa: F401  (registers the zoo with timm)
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
    """The backends raced on ``device`` for inputs of ``dtype`` by default."""
    if device.type != "cuda":
        return ["numba", "torch", "spikingjelly"]
    half = dtype in (torch.float16, torch.bfloat16)
    return ["triton", "torch", "spikingjelly"] + (
        ["spikingjelly-mp"] if half and mixed_precision else []
    )


def benchmark(args: argparse.Namespace, on_row: Callable[[dict], None] = lambda row: None) -> dict:
    """Time every shape, dtype, mode and backend; ``on_row`` sees each row as it is made."""
    device = resolve_device(args.device)
    bandwidth = copy_bandwidth(device, args.copy_mib << 20, args.reps)
    mixed_precision = mixed_precision_runs(device)
    shapes = [(f"sweep T={t} N=2^{k}", t, 1 << k, 1) for t in args.T for k in args.log2_neurons]
    if args.maxformer:
        shapes = maxformer_shapes(args.batch_size) + shapes
    result = dict(
        device=device_name(device),
        gpu=device.type == "cuda",
        torch=torch.__version__,
        threads=torch.get_num_threads(),
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
            backends = args.lif_backend or backends_for(device, dtype, mixed_precision)
            for mode in args.modes:
                closures = {b: neuron_step(b, x, grad, mode) for b in backends}
                timed = time_calls({**closures, **reference_steps(x, grad, mode)}, device,
                                   args.reps)
                moved = moved_bytes(steps, neurons, dtype, mode)
                copy_s, allocating_s = (timed[name].seconds for name in REFERENCES)
                for backend in backends:
                    seconds = timed[backend].seconds
                    result["rows"].append(dict(
                        shape=label, T=steps, N=neurons, layers=layers, dtype=dtype_name,
                        mode=mode, backend=backend, ms=seconds * 1e3,
                        gb_per_s=moved / seconds / 1e9, share_of_copy=copy_s / seconds,
                        share_of_allocating_copy=allocating_s / seconds,
                        copy_ms=copy_s * 1e3, allocating_copy_ms=allocating_s * 1e3,
                        peak_mib=timed[backend].peak_mib, page_faults=timed[backend].page_faults,
                        reference_page_faults=timed["allocating copy"].page_faults,
                    ))
                    print(format_row(result["rows"][-1]), flush=True)
                    on_row(result)
    return result


def format_row(row: dict) -> str:
    if row["peak_mib"] is not None:
        memory = f" {row['peak_mib']:9.1f} MiB"
    else:
        memory = f" {row['page_faults']:7d} faults (allocating copy {row['reference_page_faults']})"
    return (
        f"{row['shape']:<58} {row['dtype']:>4} {row['mode']:>7} {row['backend']:>15} "
        f"{row['ms']:10.3f} ms {row['gb_per_s']:8.1f} GB/s copy {100 * row['share_of_copy']:6.1f}%"
        f" allocating copy {100 * row['share_of_allocating_copy']:6.1f}%{memory}"
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
    choices = [b for b in BACKENDS if b != "auto"] + ["spikingjelly-mp"]
    add_options(
        parser, "T", "batch_size", "lif_backend", "device", "json",
        T={"nargs": "+", "default": [1, 2, 4, 8, 16], "aliases": ("--steps",),
           "help": "time steps T of the sweep (default: 1 2 4 8 16)"},
        batch_size={"default": 64, "help": "batch of the maxformer rows (default: 64)"},
        lif_backend={"nargs": "+", "choices": choices, "aliases": ("--backends",),
                     "help": "backends to race (default: triton torch spikingjelly on a GPU, "
                     "numba torch spikingjelly on the CPU)"},
    )
    parser.add_argument("--log2-neurons", type=int, nargs="+", default=None,
                        help="log2 of the neurons N of the sweep (default: 16 18 ... 26 on a GPU, "
                             "16 18 20 22 on the CPU)")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=list(DTYPES),
                        help="input dtypes (the CPU runs fp32 only)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--maxformer", action=argparse.BooleanOptionalAction, default=True,
                        help="add the neuron layers of maxformer_10_384 (default: on)")
    parser.add_argument("--reps", type=int, default=9, help="timed repetitions on the CPU")
    parser.add_argument("--copy-mib", type=int, default=1024,
                        help="buffer size of the copy-bandwidth measurement (MiB)")
    args = parser.parse_args(argv)
    if args.log2_neurons is None:
        top = 26 if resolve_device(args.device).type == "cuda" else 22
        args.log2_neurons = list(range(16, top + 1, 2))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if resolve_device(args.device).type != "cuda":
        print(f"CPU rows on {torch.get_num_threads()} threads (numba and torch backends, "
              "spikingjelly's CPU path); the triton rows need a GPU", file=sys.stderr)
    result = benchmark(args, on_row=lambda partial: write_json(args.json, partial))
    write_json(args.json, result)
    print(f"copy bandwidth ({args.copy_mib} MiB): {result['copy_gb_per_s']:.1f} GB/s on "
          f"{result['device']}")
    for line in speedups(result["rows"]) + model_totals(result["rows"]):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
