"""How close the Fourier sensitivity of a converted network comes to its ANN's as T grows.

Reads ``bandnoise.json`` files (``maxformer bandnoise``) or ``heatmap.json`` files
(``maxformer heatmap``), the ANN's first, then the other networks' (the converted network at
several T, a directly trained one), one network each, made with the same bands and levels or
the same ``--eps`` and ``--stride``. Prints one Markdown row per run:

- band noise: clean accuracy, the accuracy under noise in each band at each level, and its
  mean absolute difference from the ANN's;
- heat map: clean error, the mean loss increase over the basis images and its mean absolute
  difference from the ANN's map, and the high-frequency share of the input gradient's
  amplitude (radius >= 0.5 of Nyquist, without the DC term).

Run ``python -m analysis.conversion_fourier ANN/bandnoise.json T8/bandnoise.json ...``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spectral import heat_map_radius

HIGH = 0.5
"""Radius (1 = Nyquist) from which the gradient's amplitude counts as high-frequency."""


def _network(report: dict[str, Any], path: Path) -> dict[str, Any]:
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
    reference = _array(_network(first, reports[0][0])["accuracy"])
    header = " | ".join(f"[{low:.2f}, {high:.2f}) at {level:g}" for level in first["levels"]
                        for low, high in first["bands"])
    rows = [f"| run | neuron | T | clean | {header} | mean abs. difference |",
            "| --- " * (5 + len(first["levels"]) * len(first["bands"])) + "|"]
    for path, report in reports:
        if report["bands"] != first["bands"] or report["levels"] != first["levels"]:
            raise ValueError(f"{path} has other bands or levels than {reports[0][0]}")
        network = _network(report, path)
        accuracy = _array(network["accuracy"])
        cells = " | ".join(f"{accuracy[b, j]:.2f}" for j in range(accuracy.shape[1])
                           for b in range(accuracy.shape[0]))
        rows.append(f"| {path.parent.name} | {network['neuron']} | {network.get('T')} | "
                    f"{network['clean_accuracy']:.2f} | {cells} | "
                    f"{np.nanmean(abs(accuracy - reference)):.3f} |")
    return rows


def heatmap_rows(reports: Sequence[tuple[Path, dict[str, Any]]]) -> list[str]:
    """The heat-map table of ``reports`` (the ANN's first)."""
    first = _network(reports[0][1], reports[0][0])
    reference = _array(first["loss_increase"])
    rows = ["| run | neuron | T | clean error | mean loss increase | mean abs. difference "
            "from the ANN's map | gradient amplitude share at r >= 0.5 |",
            "| --- " * 7 + "|"]
    for path, report in reports:
        network = _network(report, path)
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


def table(paths: Sequence[Path]) -> str:
    """The Markdown table of the runs ``paths`` (all band noise or all heat maps)."""
    reports = [(path, json.loads(path.read_text())) for path in paths]
    kinds = {"bands" in report for _, report in reports}
    if len(kinds) > 1:
        raise ValueError("give bandnoise.json files or heatmap.json files, not both")
    rows = bandnoise_rows(reports) if kinds == {True} else heatmap_rows(reports)
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.conversion_fourier",
        description="Compare the band noise or Fourier heat maps of networks with an ANN's.")
    parser.add_argument("reports", nargs="+", type=Path, metavar="JSON",
                        help="the ANN's bandnoise.json or heatmap.json first, then the others'")
    args = parser.parse_args(argv)
    print(table(args.reports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
