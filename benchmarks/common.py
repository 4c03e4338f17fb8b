"""What the benchmark scripts share: timing, the machine's name and writing results as JSON."""

from __future__ import annotations

import json
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    """One closure's median wall time, its first call (compiling included), the peak memory
    (MiB, CUDA only) and the minor page faults of one call (CPU only: fresh memory touched)."""

    seconds: float
    first_seconds: float
    peak_mib: float | None
    page_faults: int | None


def _first_call(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _page_faults(fn: Callable[[], object]) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def time_calls(
    fns: dict[str, Callable[[], object]], device: torch.device, reps: int, warmup: int = 1
) -> dict[str, Timing]:
    """Median wall time of each closure after ``warmup`` untimed calls (the first of them
    timed on its own).

    CUDA: ``triton.testing.do_bench``, one closure after the other. CPU: the closures take
    turns ``reps`` times, so that a slower or busier moment of the machine falls on all of
    them alike.
    """
    first = {name: _first_call(fn, device) for name, fn in fns.items()}
    for _ in range(warmup - 1):
        for fn in fns.values():
            fn()
    if device.type == "cuda":
        import triton.testing

        results = {}
        for name, fn in fns.items():
            torch.cuda.reset_peak_memory_stats()
            ms = triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
            peak = torch.cuda.max_memory_allocated() / 2**20
            results[name] = Timing(ms / 1e3, first[name], peak, None)
        return results
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {
        name: Timing(statistics.median(t), first[name], None, _page_faults(fns[name]))
        for name, t in times.items()
    }


def device_name(device: torch.device) -> str:
    """The GPU's name, or the processor's model name (``/proc/cpuinfo`` on Linux)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0]} x {len(names)}" if names else platform.machine()


def write_json(path: str | None, result: dict) -> None:
    """Write ``result`` to ``path`` as indented JSON; nothing when ``path`` is None."""
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
