"""The default ``maxformer train`` beside busy processes: epoch time and CPU time per neuron
backend, with OpenMP's threads spinning while they wait (libgomp's default, reproduced by
importing torch before ``models``) and sleeping (``OMP_WAIT_POLICY=PASSIVE``, what
``import models`` sets when torch is not yet loaded); ``one-thread`` also sets
``OMP_NUM_THREADS=1`` (no thread waits for another one that the busy processes hold up).

Busy-loop processes (``--busy``, default 2) run for the whole benchmark; the runs of every
backend and policy are made in turns, so that a busier moment of the machine falls on all
of them alike. Each row gives the mean epoch time of its runs (from their ``metrics.csv``),
the wall time and the CPU time of the whole process.

    python -m benchmarks.bench_contention --busy 2 --epochs 2 --json contention.json
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_json

POLICIES = {
    "spin": ("import torch", {}),  # libgomp's default: threads spin ~3 ms before sleeping
    "passive": ("", {}),  # import models first: it sets OMP_WAIT_POLICY=PASSIVE
    "one-thread": ("", {"OMP_NUM_THREADS": "1"}),  # passive, and no thread to wait for
}
"""Policy -> what the training process imports before ``models``, and its environment."""

BUSY_LOOP = "while True: pass"


def train_once(policy: str, backend: str, epochs: int, output: Path) -> dict:
    """One ``maxformer train`` (the digits default) in a fresh process: its mean epoch time,
    wall time and CPU time (user + system) in seconds."""
    prefix, extra_env = POLICIES[policy]
    code = (f"{prefix}\nimport sys\nfrom models.app.cli import main\n"
            f"sys.exit(main(sys.argv[1:]))")
    command = [sys.executable, "-c", code, "train", "--epochs", str(epochs), "--no-progress",
               "--lif-backend", backend, "--output", str(output)]
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")} | extra_env
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with open(output / "metrics.csv", newline="") as f:
        epochs_s = [float(row["epoch_seconds"]) for row in csv.DictReader(f)]
    return dict(epoch_s=sum(epochs_s) / len(epochs_s), wall_s=wall, cpu_s=cpu)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--busy", type=int, default=2, help="busy-loop processes (default 2)")
    parser.add_argument("--backends", nargs="+", default=["numba", "torch", "spikingjelly"])
    parser.add_argument("--policies", nargs="+", choices=list(POLICIES),
                        default=["spin", "passive"])
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default 2)")
    parser.add_argument("--reps", type=int, default=1, help="runs per row (default 1)")
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the busy loops on the way out
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(args.busy)]
    runs: dict[tuple[str, str], list[dict]] = {}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for rep in range(args.reps):
                for backend in args.backends:
                    for policy in args.policies:
                        out = Path(scratch) / f"{backend}-{policy}-{rep}"
                        runs.setdefault((backend, policy), []).append(
                            train_once(policy, backend, args.epochs, out))
    finally:
        for process in busy:
            process.kill()
            process.wait()
    rows = []
    for (backend, policy), results in runs.items():
        row = dict(backend=backend, policy=policy, busy=args.busy, epochs=args.epochs,
                   runs=len(results),
                   **{k: sum(r[k] for r in results) / len(results) for k in results[0]})
        rows.append(row)
        print(f"{backend:<13} {policy:<8} beside {args.busy} busy: epoch {row['epoch_s']:7.2f} s"
              f" | process wall {row['wall_s']:7.1f} s, CPU {row['cpu_s']:7.1f} s", flush=True)
    write_json(args.json, dict(busy=args.busy, load_before=load_before,
                               load_after=os.getloadavg(), rows=rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
