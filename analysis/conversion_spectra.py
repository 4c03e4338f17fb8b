"""How close the feature spectra of a converted network come to its ANN's as T grows.

Reads the ``spectra.json`` of the ANN, then those of its converted network at several T (one
``maxformer spectra`` run each, with or without ``--time-mean``; each run's T is in its
network record), matches layers by name (conversion keeps the ANN's module names) and prints
one Markdown row per run: T, whether maps were averaged over time, the mean high-frequency
ratio of the matched layers' outputs per stage, their mean relative log amplitude at the
summary point (the Nyquist radius; lower: less high-frequency detail), the mean absolute
difference of the ratio from the ANN's over the matched layers, and the mean over them of
the largest absolute difference between their relative log amplitude profiles and the ANN's.

Run ``python -m analysis.conversion_spectra ANN/spectra.json T8/spectra.json T256/spectra.json``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Layers = dict[str, dict[str, Any]]


def analysed_layers(report: dict[str, Any], path: Path) -> Layers:
    """The layers with an analysed output of the report's one network, by name."""
    if len(report["networks"]) != 1:
        raise ValueError(f"{path} holds {len(report['networks'])} networks; give runs of one "
                         "network each")
    return {r["layer"]: r for r in report["layers"] if r["output"] is not None}


def profile_distance(a: dict[str, Any], b: dict[str, Any]) -> float:
    """The largest absolute difference of two relative log amplitude profiles at the radii
    where both are finite (nan if there is none)."""
    pairs = [(x, y) for x, y in zip(a["delta_log_amplitude"], b["delta_log_amplitude"],
                                    strict=True) if x is not None and y is not None]
    return max((abs(x - y) for x, y in pairs), default=math.nan)


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def comparison(ann: Layers, run: Layers) -> dict[str, Any]:
    """Per-stage mean high-frequency ratios of ``run`` and its distances to ``ann`` over the
    layers both analysed."""
    names = [name for name in run if name in ann]
    if not names:
        raise ValueError("the runs share no analysed layer name")
    stages = sorted({run[name]["stage"] for name in names})
    return {
        "layers": len(names),
        "stage_ratio": [_mean([run[n]["output"]["high_frequency_ratio"] for n in names
                               if run[n]["stage"] == stage]) for stage in stages],
        "summary_delta": _mean([run[n]["output"]["delta_log_amplitude"] for n in names]),
        "ratio_distance": _mean([abs(run[n]["output"]["high_frequency_ratio"]
                                     - ann[n]["output"]["high_frequency_ratio"])
                                 for n in names
                                 if run[n]["output"]["high_frequency_ratio"] is not None
                                 and ann[n]["output"]["high_frequency_ratio"] is not None]),
        "profile_distance": _mean([profile_distance(run[n]["output"]["profile"],
                                                    ann[n]["output"]["profile"])
                                   for n in names]),
    }


def table(paths: Sequence[Path]) -> str:
    """The Markdown table comparing every run of ``paths[1:]`` with the ANN of ``paths[0]``."""
    reports = [json.loads(path.read_text()) for path in paths]
    layers = [analysed_layers(report, path) for report, path in zip(reports, paths,
                                                                     strict=True)]
    rows = []
    for report, path, run in zip(reports, paths, layers, strict=True):
        found = comparison(layers[0], run)
        network = report["networks"][0]
        ratios = " / ".join(f"{r:.3f}" for r in found["stage_ratio"])
        rows.append(f"| {path.parent.name} | {network['neuron']} | {network.get('T')} | "
                    f"{'yes' if report.get('time_mean') else 'no'} | {found['layers']} | "
                    f"{ratios} | {found['summary_delta']:.3f} | {found['ratio_distance']:.3f} | "
                    f"{found['profile_distance']:.3f} |")
    header = ("| run | neuron | T | time mean | layers | high-frequency ratio per stage | "
              "relative log amplitude at Nyquist | mean abs. difference of the ratio | mean "
              "largest abs. difference of the profile |\n"
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    return "\n".join([header, *rows])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.conversion_spectra",
        description="Compare the spectra of converted networks at several T with the ANN's.")
    parser.add_argument("reports", nargs="+", type=Path, metavar="SPECTRA_JSON",
                        help="the ANN's spectra.json first, then the converted network's")
    args = parser.parse_args(argv)
    print(table(args.reports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
