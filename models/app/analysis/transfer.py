"""``maxformer transfer``: the temporal transfer through a trained network's layers, measured
beside Eq. 12's prediction from the network's own tau, and the figure of it."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
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
from models.app.analysis.networks import Network
from models.app.analysis.report import write_png
from models.app.errors import UserError
from models.app.options import resolve_device
from models.neurons import MultiStepNeuron, MultiStepReLU
from models.zoo import SpikingBackbone, zoo_model_names
from spectral import LayerTransfer, check_omegas, predicted_gain_db, temporal_transfer

TRANSFER_JSON, TRANSFER_PNG = "transfer.json", "transfer.png"
PROBED = (MultiStepNeuron, MultiStepReLU)


def even_omegas(count: int) -> np.ndarray:
    """``count`` frequencies spaced evenly up to pi: ``pi / count, 2 pi / count, ..., pi``."""
    return math.pi * np.arange(1, count + 1) / count


def omega_grid(args: argparse.Namespace) -> np.ndarray:
    """``--omega`` values, else ``--omegas`` frequencies spaced evenly up to pi."""
    if args.omega:
        try:
            return check_omegas(args.omega)
        except ValueError as err:
            raise UserError(f"--omega: {err}") from err
    return even_omegas(args.omegas)


def neuron_filter(model: torch.nn.Module) -> tuple[float | None, bool] | None:
    """``(tau, decay_input)`` of the network's spiking neurons (tau None: IF), None when it has
    none (a ReLU twin)."""
    spec = next((m.spec for m in model.modules() if isinstance(m, MultiStepNeuron)), None)
    if spec is None:
        return None
    return (spec.tau if spec.is_lif else None), bool(spec.decay_input)


def _check_time_axis(network: Network) -> None:
    if not isinstance(network.model, SpikingBackbone):
        raise UserError(f"{network.label} is a {type(network.model).__name__} without a time "
                        "axis (it takes no clips [B, T, C, H, W]); temporal transfer needs one "
                        "of the zoo's networks")


def layer_transfers(
    model: torch.nn.Module, images: list[torch.Tensor], omegas: np.ndarray, eps: float, T: int,
    warmup: int, names: tuple[str, ...] = (), progress: Callable[[int], None] | None = None,
    before: Callable[[], None] | None = None,
) -> tuple[np.ndarray, list[LayerTransfer], np.ndarray]:
    """`spectral.temporal_transfer` of a zoo network on batches ``images [B, C, H, W]`` over
    ``T`` steps (``warmup`` of them unmeasured): its neurons (``PROBED``), or the modules
    matching ``names``, with the spiking neurons counted for Eq. 12."""
    return temporal_transfer(
        model, images, omegas, eps=eps, steps=T - warmup, warmup=warmup,
        types=() if names else PROBED, names=names, neuron_types=MultiStepNeuron,
        progress=progress, before=before)


def predicted_db(layer: LayerTransfer, omega: np.ndarray,
                 filt: tuple[float | None, bool] | None) -> np.ndarray:
    """Eq. 12's gain ``[F]`` (dB re the lowest omega) of ``layer`` from the network's neuron
    filter (`neuron_filter`): 0 dB without spiking neurons before it."""
    if filt is None or layer.neurons == 0:
        return np.zeros_like(omega)
    return predicted_gain_db(omega, layer.neurons, *filt)


def measure(network: Network, args: argparse.Namespace, device: torch.device,
            omegas: np.ndarray) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The network's record and one record per probed layer, in call order."""
    _check_time_axis(network)
    model = network.model.to(device).eval()
    data, source = batches(network, args, device)
    names = tuple(args.layers or ())
    warmup = args.warmup if args.warmup is not None else args.T // 4
    steps = args.T - warmup
    if steps < 4:
        raise UserError(f"--T {args.T} with --warmup {warmup} leaves {steps} measured steps; "
                        "give at least 4")
    passes = len(data) * (3 + len(omegas))
    with progress_bar(args, passes, network.label, "pass") as bar:
        try:
            omega, layers, spectrum_omegas = layer_transfers(
                model, [x for x, _ in data], omegas, args.eps, args.T, warmup, names,
                bar.update, forward_reset(network))
        except ValueError as err:
            if "no module" in str(err):
                modules = [n for n, _ in model.named_modules() if n][:12]
                raise UserError(f"--layers {' '.join(names)} match no module of "
                                f"{network.label}; its modules include "
                                f"{', '.join(modules)}") from err
            raise UserError(f"{network.label}: {err}") from err
    filt = neuron_filter(model)
    record = {"network": network.label, "model": network.model_name, "neuron": network.neuron,
              "twin_of": network.twin_of, "weights": network.weights,
              "random_weights": network.random_weights, "images": source,
              "image_count": sum(len(x) for x, _ in data), "T": args.T, "warmup": warmup,
              "tau": filt[0] if filt else None, "decay_input": filt[1] if filt else None,
              "spectrum_omegas": spectrum_omegas.tolist()}
    rows = []
    for layer in layers:
        rows.append({
            "network": network.label, "layer": layer.name, "module_type": layer.module_type,
            "neuron": layer.neuron, "neurons_before": layer.neurons,
            "omega": omega.tolist(), "gain": values(layer.gain),
            "gain_db": values(layer.gain_db), "predicted_db": values(predicted_db(
                layer, omega, filt)),
            "phase": values(layer.phase), "floor": values(layer.floor),
            "floor_db": values(db_of(layer.floor, layer.gain[0])),
            "slope": layer.slope, "spike_spectrum": values(layer.spectrum),
        })
    return record, rows


def plot(report: dict[str, Any], path: Path) -> None:
    """Top: gain (dB, relative to the lowest omega) against omega per layer, measured solid,
    predicted dashed, the noise floor dotted. Bottom: the temporal power spectrum (DC left
    out) of each layer's output without drive (the paper's Fig. 3 view). One column per network."""
    nets = report["networks"]
    fig = Figure(figsize=(5.0 * len(nets), 8.0), layout="constrained")
    axes = fig.subplots(2, len(nets), squeeze=False)
    colours = colormaps["viridis"]
    for column, net in enumerate(nets):
        top, bottom = axes[0, column], axes[1, column]
        rows = [r for r in report["layers"] if r["network"] == net["network"]]
        for i, row in enumerate(rows):
            colour = colours(i / max(len(rows) - 1, 1))
            label = row["layer"] if i in (0, len(rows) - 1) else None
            top.plot(row["omega"], _nan(row["gain_db"]), color=colour, lw=1.2, label=label)
            top.plot(row["omega"], row["predicted_db"], color=colour, lw=0.8, ls="--")
            power = np.array(_nan(row["spike_spectrum"]))[1:]  # DC left out (mean removed)
            bottom.plot(net["spectrum_omegas"][1:], np.where(power > 0, power, np.nan),
                        color=colour, lw=0.8, label=label)
        if rows:
            floor = np.nanmax([_nan(r["floor_db"]) for r in rows], axis=0)
            top.plot(rows[0]["omega"], floor, color="grey", ls=":", label="noise floor (max)")
        top.set_xlabel("omega (rad / step)")
        top.set_ylabel("gain (dB re lowest omega)")
        top.set_title(net["network"][:60], fontsize=8)
        top.legend(fontsize=7, title="solid: measured, dashed: Eq. 12", title_fontsize=7)
        if any(np.nanmax(np.array(_nan(r["spike_spectrum"]), dtype=float)[1:], initial=0) > 0
               for r in rows):
            bottom.set_yscale("log")
        bottom.set_xlabel("omega (rad / step)")
        bottom.set_ylabel("power of the output without drive")
        bottom.legend(fontsize=7)
    write_png(path, fig, 110)


def _nan(values_: list) -> list[float]:
    return [np.nan if v is None else v for v in values_]


def db_of(value: np.ndarray, reference: float) -> np.ndarray:
    """``value`` in dB relative to ``reference`` (nan or inf where either is 0 or nan)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 20 * np.log10(value / reference)


def _db(value: float | None) -> str:
    return "n/a dB" if value is None else f"{value:.2f} dB"


def run(args: argparse.Namespace) -> int:
    if not (math.isfinite(args.eps) and args.eps > 0):
        raise UserError(f"--eps must be a number > 0 (the drive amplitude), got {args.eps}")
    omegas = omega_grid(args)
    device = resolve_device(args.device)
    if not args.checkpoint and args.model is not None and ":" not in args.model and \
            args.model.split(".")[0] not in zoo_model_names():
        raise UserError(f"--model {args.model} has no time axis (it takes no clips "
                        "[B, T, C, H, W]); temporal transfer needs one of the zoo's networks: "
                        f"{', '.join(zoo_model_names())}")
    nets = networks(args)
    report: dict[str, Any] = {"eps": args.eps, "omega": omegas.tolist(), "networks": [],
                              "layers": []}
    with outputs(args, "transfer", nets[0].model_name) as (folder, written):
        for network in nets:
            record, rows = measure(network, args, device, omegas)
            report["networks"].append(record)
            report["layers"] += rows
            last = rows[-1]
            print(f"{network.label}: {len(rows)} layers; last ({last['layer']}) "
                  f"{_db(last['gain_db'][-1])} at omega {omegas[-1]:.3f}, Eq. 12 "
                  f"{_db(last['predicted_db'][-1])}")
        write_report(folder, written, report, plot, TRANSFER_PNG, TRANSFER_JSON)
    return 0
