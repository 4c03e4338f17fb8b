"""``maxformer heatmap`` and ``maxformer bandnoise``: what spatial frequencies cost a network's
decisions (Yin et al.'s Fourier heat map with the gradient view; Park & Kim's band noise)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from models.app.analysis.common import (
    batches,
    forward_reset,
    networks,
    outputs,
    progress_bar,
    values,
    write_report,
)
from models.app.analysis.report import network_record, write_png
from models.app.errors import UserError
from models.app.options import resolve_device
from spectral import band_mask, band_noise_accuracy, fourier_heat_map, gradient_spectrum

HEATMAP_JSON, HEATMAP_PNG = "heatmap.json", "heatmap.png"
BANDNOISE_JSON, BANDNOISE_PNG = "bandnoise.json", "bandnoise.png"


def _check_eps(eps: float, flag: str = "--eps") -> None:
    if not (math.isfinite(eps) and eps > 0):
        raise UserError(f"{flag} must be a number > 0, got {eps}")


def heatmap_stride(args: argparse.Namespace, size: int) -> int:
    """``--stride``, else 1 up to 32 px and the stride that keeps 32 frequencies above."""
    return args.stride or max(1, math.ceil(size / 32))


def run_heatmap(args: argparse.Namespace) -> int:
    """Measure every network's heat maps, then write heatmap.json and heatmap.png."""
    _check_eps(args.eps)
    device = resolve_device(args.device)
    nets = networks(args)
    report: dict[str, Any] = {"eps": args.eps, "networks": []}
    with outputs(args, "heatmap", nets[0].model_name) as (folder, written):
        for network in nets:
            network.model.to(device).eval()
            model = network.runner
            data, source = batches(network, args, device)
            stride = heatmap_stride(args, max(data[0][0].shape[-2:]))
            count = sum(len(x) for x, _ in data)
            with progress_bar(args, None, network.label, "img") as bar:
                heat = fourier_heat_map(model, data, args.eps, stride, args.seed, bar.update,
                                        forward_reset(network))
            u, v, grad = gradient_spectrum(model, data, forward_reset(network))
            record = network_record(network, source, count)
            record.update({"stride": stride, "u": heat.u.tolist(), "v": heat.v.tolist(),
                           "clean_error": heat.clean_error, "clean_loss": heat.clean_loss,
                           "error": values(heat.error),
                           "loss_increase": values(heat.loss_increase),
                           "gradient": {"u": u.tolist(), "v": v.tolist(),
                                        "amplitude": values(grad)}})
            report["networks"].append(record)
            print(f"{network.label}: clean error {heat.clean_error:.3f}; under the basis "
                  f"images error {heat.error.min():.3f} to {heat.error.max():.3f}, loss "
                  f"increase up to {heat.loss_increase.max():.3f}")
        write_report(folder, written, report, plot_heatmaps, HEATMAP_PNG, HEATMAP_JSON)
    return 0


def _array(rows: list) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


def plot_heatmaps(report: dict[str, Any], path: Path) -> None:
    """One row per network: error rate, loss increase, gradient amplitude (centred layout)."""
    nets = report["networks"]
    fig = Figure(figsize=(11.5, 3.4 * len(nets)), layout="constrained")
    axes = fig.subplots(len(nets), 3, squeeze=False)
    for row, net in zip(axes, nets, strict=True):
        grad = net["gradient"]
        panels = ((net["error"], net["u"], net["v"], "error rate"),
                  (net["loss_increase"], net["u"], net["v"], "loss increase"),
                  (grad["amplitude"], grad["u"], grad["v"], "|FFT of d loss / d input|"))
        for ax, (data, u, v, title) in zip(row, panels, strict=True):
            extent = (v[0] - 0.5, v[-1] + 0.5, u[-1] + 0.5, u[0] - 0.5)
            image = ax.imshow(_array(data), cmap="viridis", extent=extent)
            fig.colorbar(image, ax=ax, shrink=0.8)
            ax.set_title(f"{title}\n{net['network'][:50]}", fontsize=7)
            ax.set_xlabel("v")
            ax.set_ylabel("u")
    write_png(path, fig, 110)


def parse_bands(text: list[str] | None, count: int) -> list[tuple[float, float]]:
    """``--band LOW:HIGH`` values, else ``count`` equal bands of radius from 0 to sqrt(2)."""
    if not text:
        edges = np.linspace(0.0, math.sqrt(2.0), count + 1)
        edges[-1] += 1e-9
        return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    bands = []
    for item in text:
        try:
            low, high = (float(part) for part in item.split(":"))
        except ValueError:
            raise UserError(f"--band {item!r} is not LOW:HIGH (normalised radii, "
                            "1 = Nyquist)") from None
        if not 0.0 <= low < high:
            raise UserError(f"--band {item}: need 0 <= LOW < HIGH")
        bands.append((low, high))
    return bands


def run_bandnoise(args: argparse.Namespace) -> int:
    """Measure every network's accuracy under band noise, then write bandnoise.json/png."""
    levels = args.level or [0.1, 0.2, 0.4, 0.8]
    for level in levels:
        _check_eps(level, "--level")
    device = resolve_device(args.device)
    nets = networks(args)
    bands = parse_bands(args.band, args.bands)
    report: dict[str, Any] = {"bands": bands, "levels": levels, "networks": []}
    with outputs(args, "bandnoise", nets[0].model_name) as (folder, written):
        for network in nets:
            network.model.to(device).eval()
            model = network.runner
            data, source = batches(network, args, device)
            h, w = data[0][0].shape[-2:]
            for low, high in bands:
                try:
                    band_mask(h, w, low, high)
                except ValueError as err:
                    raise UserError(f"--band {low}:{high}: {err}") from err
            count = sum(len(x) for x, _ in data)
            with progress_bar(args, len(bands) * len(levels) * count, network.label,
                              "img") as bar:
                clean, accuracy = band_noise_accuracy(model, data, bands, levels, args.seed,
                                                      bar.update, forward_reset(network))
            record = network_record(network, source, count)
            record.update({"clean_accuracy": clean, "accuracy": values(accuracy)})
            report["networks"].append(record)
            print(f"{network.label}: clean accuracy {clean:.3f}; at level {levels[-1]} "
                  + ", ".join(f"[{lo:.2f}, {hi:.2f}) {a:.3f}"
                              for (lo, hi), a in zip(bands, accuracy[:, -1], strict=True)))
        write_report(folder, written, report, plot_bandnoise, BANDNOISE_PNG, BANDNOISE_JSON)
    return 0


def plot_bandnoise(report: dict[str, Any], path: Path) -> None:
    """Accuracy against the band's centre radius, one panel per level, one curve per net."""
    levels, bands = report["levels"], report["bands"]
    centres = [(low + min(high, math.sqrt(2.0))) / 2 for low, high in bands]
    fig = Figure(figsize=(3.6 * len(levels), 3.4), layout="constrained")
    axes = fig.subplots(1, len(levels), squeeze=False)[0]
    colours = colormaps["tab10"]
    for j, (ax, level) in enumerate(zip(axes, levels, strict=True)):
        for i, net in enumerate(report["networks"]):
            ax.plot(centres, [row[j] for row in net["accuracy"]], marker="o",
                    color=colours(i % 10), label=net["network"][:40])
            ax.axhline(net["clean_accuracy"], color=colours(i % 10), ls=":", lw=0.8)
        ax.set_title(f"noise RMS {level}", fontsize=8)
        ax.set_xlabel("band centre radius (1 = Nyquist)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
    axes[0].legend(fontsize=6)
    write_png(path, fig, 110)
