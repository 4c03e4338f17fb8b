"""The figures of ``maxformer spectra``, drawn from its JSON report on matplotlib's Agg canvas:
``spectra.png`` (one colour per network) and ``cam.png`` (Grad-CAM overlays)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from models.app.analysis.report import write_png

MAX_STAGE_COLUMNS = 4


def _analysed(report: dict[str, Any], network: str) -> list[dict[str, Any]]:
    return [r for r in report["layers"] if r["network"] == network and r["output"] is not None]


def _nan(value: float | None) -> float:
    return np.nan if value is None else value


def mean_profile(curves: Sequence[dict[str, Any]]) -> np.ndarray:
    """The mean relative log amplitude of layers' profiles (``spectra.json``'s ``profile``
    records, on the same radii) at each radius, over the layers finite there (nan where none
    is)."""
    values = np.array([[_nan(v) for v in c["delta_log_amplitude"]] for c in curves])
    finite = np.isfinite(values)
    counts = finite.sum(0)
    mean = np.where(finite, values, 0.0).sum(0) / np.maximum(counts, 1)
    return np.where(counts > 0, mean, np.nan)


def plot_spectra(report: dict[str, Any], path: Path) -> None:
    """``spectra.png``: (a) relative log amplitude at the method's summary point and (b) the
    high-frequency ratio against normalised depth (outputs solid; neurons' membrane inputs
    dashed), then the relative log amplitude against frequency per stage (thin: layers;
    thick: their mean)."""
    networks = [n["network"] for n in report["networks"]]
    colours = colormaps["tab10"]
    stages = sorted({r["stage"] for r in report["layers"] if r["stage"] is not None})
    columns = min(max(len(stages), 1), MAX_STAGE_COLUMNS)
    rows = -(-len(stages) // columns)
    fig = Figure(figsize=(4.2 * max(columns, 3), 3.6 * (1 + rows)), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, rows])
    ax_delta, ax_ratio = top.subplots(1, 2)
    stage_axes = np.atleast_1d(bottom.subplots(rows, columns, squeeze=False)).ravel()
    for index, network in enumerate(networks):
        colour = colours(index % 10)
        layers = _analysed(report, network)
        depth = [r["depth"] for r in layers]
        for key, ax in (("delta_log_amplitude", ax_delta), ("high_frequency_ratio", ax_ratio)):
            ax.plot(depth, [_nan(r["output"][key]) for r in layers], "o-", ms=3, color=colour,
                    label=network)
            inputs = [(r["depth"], _nan(r["input"][key])) for r in layers if r["input"]]
            if inputs:
                ax.plot(*zip(*inputs, strict=True), "x--", ms=3, lw=0.8, color=colour, alpha=0.6)
        for ax, stage in zip(stage_axes, stages, strict=False):
            curves = [r["output"]["profile"] for r in layers if r["stage"] == stage]
            for curve in curves:
                ax.plot(curve["radius"], [_nan(v) for v in curve["delta_log_amplitude"]],
                        color=colour, lw=0.6, alpha=0.3)
            if curves:
                ax.plot(curves[0]["radius"], mean_profile(curves), color=colour, lw=2)
    method = report["method"]
    ax_delta.set(title=f"(a) relative log amplitude at the summary point ({method})",
                 xlabel="normalised depth", ylabel="log |F(r)| - log |F(0)|")
    ax_ratio.set(title=f"(b) high-frequency power ratio (radius >= {report['cutoff']:g})",
                 xlabel="normalised depth", ylabel="share of non-DC power", ylim=(0, 1))
    top.legend(*ax_delta.get_legend_handles_labels(), loc="outside lower center",
               ncols=min(len(networks), 3), fontsize=8,
               title="solid: layer output; dashed: a neuron's input", title_fontsize=8)
    for ax in (ax_delta, ax_ratio):
        ax.grid(alpha=0.3)
    sizes = {r["stage"]: r["map_size"] for r in report["layers"] if r["stage"]}
    for ax, stage in zip(stage_axes, stages, strict=False):
        h, w = sizes[stage]
        ax.set(title=f"stage {stage} ({h}x{w} maps)", xlabel="radius (1 = Nyquist)",
               ylabel="relative log amplitude")
        ax.grid(alpha=0.3)
    for ax in stage_axes[len(stages):]:
        ax.set_axis_off()
    write_png(path, fig, 100)


@dataclass(frozen=True)
class CamRow:
    """One network's Grad-CAM: its images ``[K, C, H, W]`` (normalised), heat maps
    ``[K, H, W]`` in [0, 1], explained classes and labels (``-1``: none) ``[K]``."""

    network: str
    layer: str
    images: torch.Tensor
    heat: torch.Tensor
    classes: Sequence[int]
    labels: Sequence[int]


def display_image(image: torch.Tensor) -> np.ndarray:
    """A normalised image ``[C, H, W]`` (or frames ``[T, C, H, W]``: their mean) scaled to
    [0, 1] for display: ``[H, W]`` grey or ``[H, W, 3]``."""
    image = image.float().cpu()
    if image.ndim == 4:
        image = image.mean(0)
    image = image.mean(0) if image.shape[0] != 3 else image.permute(1, 2, 0)
    low, high = image.min(), image.max()
    return ((image - low) / (high - low if high > low else 1.0)).numpy()


def draw_cams(axes: Sequence[Axes], row: CamRow, caption: str = "title",
              fontsize: float = 6) -> None:
    """Image ``k`` of ``row`` on ``axes[k]`` with its heat map over it, captioned (``caption``:
    "title" or "xlabel") with the explained class and the label; a map that is not finite is
    left out and its caption says so in red; axes without an image are turned off."""
    for k, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= len(row.heat):
            ax.set_axis_off()
            continue
        ax.imshow(display_image(row.images[k]), cmap="gray")
        heat = row.heat[k].cpu().numpy()
        label = f" (label {row.labels[k]})" if row.labels[k] >= 0 else ""
        write = ax.set_title if caption == "title" else ax.set_xlabel
        if np.isfinite(heat).all():
            ax.imshow(heat, cmap="jet", alpha=0.65 * heat, vmin=0, vmax=1)
            write(f"class {row.classes[k]}{label}", fontsize=fontsize)
        else:  # no class: the argmax of NaN logits is no prediction
            write(f"NaN/inf map{label}", fontsize=fontsize, color="red")


def plot_cam(rows: Sequence[CamRow], path: Path) -> None:
    """``cam.png``: one row per network, one column per image, the heat map over the image
    (left out, and said so, where the layer or its gradient was not finite)."""
    columns = max(len(row.heat) for row in rows)
    fig = Figure(figsize=(1.6 * columns + 1.6, 1.9 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for row, line in zip(rows, axes, strict=True):
        line[0].set_ylabel(f"{textwrap.fill(row.network, 28)}\nlayer {row.layer}", fontsize=6)
        draw_cams(line, row)
    write_png(path, fig, 100)
