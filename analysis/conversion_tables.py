"""How close a converted network comes to its ANN as T grows: feature spectra, band noise,
Fourier heat maps.

Reads reports of ``maxformer spectra``, ``bandnoise`` or ``heatmap`` (all of one kind), the
ANN's first, then the other networks' (the converted network at several T, one run each; a
directly trained network), each of one network, and prints one Markdown row per report
(each run's T is in its network record):

- spectra (``spectra.json``, with or without ``--time-mean``): layers are matched by name
  (conversion keeps the ANN's module names); the mean high-frequency ratio of the matched
  layers' outputs per stage, their mean relative log amplitude at the summary point (the
  Nyquist radius; lower: less high-frequency detail), the mean absolute difference of the
  ratio from the ANN's, and the mean of the largest absolute difference between their
  relative log amplitude profiles and the ANN's;
- band noise (``bandnoise.json``, the same bands and levels): clean accuracy, the accuracy
  under noise in each band at each level, and its mean absolute difference from the ANN's;
- heat map (``heatmap.json``, the same ``--eps`` and ``--stride``): clean error, the mean
  loss increase over the basis images and its mean absolute difference from the ANN's map,
  and the high-frequency share of the input gradient's amplitude (radius >= 0.5 of Nyquist,
  without the DC term).

Run ``python -m analysis.conversion_tables ANN/spectra.json T8/spectra.json T256/spectra.json``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spectral import heat_map_radius

HIGH = 0.5
"""Radius (1 = Nyquist) from which the gradient's amplitude counts as high-frequency."""


def one_network(report: dict[str, Any], path: Path) -> dict[str, Any]:
    """The one network of a report (ValueError if it has several)."""
    if len(report["networks"]) != 1:
        raise ValueError(f"{path} holds {len(report['networks'])} networks; give runs of one "
                         "network each")
    return report["networks"][0]


def _array(rows: list) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


def gradient_high_share(gradient: dict[str, Any], size: int) -> float:
    """The share of the gradient's mean FFT amplitude (non-DC) at radius >= `HIGH`, on all the
    centred frequencies ``u``, ``v`` of a ``size`` x ``size`` input."""
    amplitude = _array(gradient["amplitude"])
    radius = heat_map_radius(size, size)
    if radius.shape != amplitude.shape:
        raise ValueError(f"the gradient's amplitude {amplitude.shape} is not every frequency "
                         f"of a {size} x {size} input")
    non_dc = radius > 0
    return float(amplitude[non_dc & (radius >= HIGH)].sum() / amplitude[non_dc].sum())


def bandnoise_rows(reports: Sequence[tuple[Path, dict[str, Any]]]) -> list[str]:
    """The band-noise table of ``reports`` (the ANN's first)."""
    first = reports[0][1]
    reference = _array(one_network(first, reports[0][0])["accuracy"])
    header = " | ".join(f"[{low:.2f}, {high:.2f}) at {level:g}" for level in first["levels"]
                        for low, high in first["bands"])
    rows = [f"| run | neuron | T | clean | {header} | mean abs. difference |",
            "| --- " * (5 + len(first["levels"]) * len(first["bands"])) + "|"]
    for path, report in reports:
        if report["bands"] != first["bands"] or report["levels"] != first["levels"]:
            raise ValueError(f"{path} has other bands or levels than {reports[0][0]}")
        network = one_network(report, path)
        accuracy = _array(network["accuracy"])
        cells = " | ".join(f"{accuracy[b, j]:.2f}" for j in range(accuracy.shape[1])
                           for b in range(accuracy.shape[0]))
        rows.append(f"| {path.parent.name} | {network['neuron']} | {network.get('T')} | "
                    f"{network['clean_accuracy']:.2f} | {cells} | "
                    f"{np.nanmean(abs(accuracy - reference)):.3f} |")
    return rows


def heatmap_rows(reports: Sequence[tuple[Path, dict[str, Any]]]) -> list[str]:
    """The heat-map table of ``reports`` (the ANN's first)."""
    first = one_network(reports[0][1], reports[0][0])
    reference = _array(first["loss_increase"])
    rows = ["| run | neuron | T | clean error | mean loss increase | mean abs. difference "
            "from the ANN's map | gradient amplitude share at r >= 0.5 |",
            "| --- " * 7 + "|"]
    for path, report in reports:
        network = one_network(report, path)
        if (report["eps"], network["u"], network["v"]) != (reports[0][1]["eps"], first["u"],
                                                           first["v"]):
            raise ValueError(f"{path} has another --eps or frequency grid than "
                             f"{reports[0][0]}")
        loss = _array(network["loss_increase"])
        rows.append(f"| {path.parent.name} | {network['neuron']} | {network.get('T')} | "
                    f"{network['clean_error']:.3f} | {np.nanmean(loss):.4f} | "
                    f"{np.nanmean(abs(loss - reference)):.4f} | "
                    f"{gradient_high_share(network['gradient'], network['img_size']):.3f} |")
    return rows


Layers = dict[str, dict[str, Any]]


def analysed_layers(report: dict[str, Any], path: Path) -> Layers:
    """The layers with an analysed output of the report's one network, by name."""
    one_network(report, path)
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


def spectra_rows(reports: Sequence[tuple[Path, dict[str, Any]]]) -> list[str]:
    """The spectra table of ``reports`` (the ANN's first)."""
    layers = [analysed_layers(report, path) for path, report in reports]
    rows = []
    for (path, report), run in zip(reports, layers, strict=True):
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
    return [header, *rows]


def table(paths: Sequence[Path]) -> str:
    """The Markdown table of the reports ``paths`` (the ANN's first; all of one kind)."""
    reports = [(path, json.loads(path.read_text())) for path in paths]
    kinds = {"spectra" if "layers" in report else "bandnoise" if "bands" in report
             else "heatmap" for _, report in reports}
    if len(kinds) > 1:
        raise ValueError("give spectra.json, bandnoise.json or heatmap.json files, one kind")
    kind = kinds.pop()
    rows = {"spectra": spectra_rows, "bandnoise": bandnoise_rows, "heatmap": heatmap_rows}[kind]
    return "\n".join(rows(reports))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.conversion_tables",
        description="Compare the spectra, band noise or Fourier heat maps of networks with an "
                    "ANN's.")
    parser.add_argument("reports", nargs="+", type=Path, metavar="JSON",
                        help="the ANN's spectra.json, bandnoise.json or heatmap.json first, "
                        "then the others'")
    args = parser.parse_args(argv)
    print(table(args.reports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
