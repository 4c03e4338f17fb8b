"""The network-level measures a study records per cell (its ``measures`` key), as summaries.

- ``transfer``: `spectral.temporal_transfer` (through `transfer.layer_transfers`) of the
  cell's network: per stage, the gain of the stage's last probed layer at the highest omega
  in dB relative to the lowest (``transfer_db_<stage>``), Eq. 12's prediction for it
  (``eq12_db_<stage>``) and the lock-in's noise floor there, in dB relative to the same
  lowest-omega gain (``floor_db_<stage>``); ``<stage>`` ``first`` is the first probed layer.
- ``heatmap``: `spectral.fourier_heat_map`: mean error increase (over the clean error) and
  loss increase over the basis images of radius in ``(0, cutoff)`` and ``>= cutoff``
  (``heatmap_error_low``, ``heatmap_error_high``, ``heatmap_loss_low``, ``heatmap_loss_high``)
  and the clean error (``heatmap_clean_error``).
- ``bandnoise``: `spectral.band_noise_accuracy` in a low band (radius in ``(0, cutoff)``) and
  a high band (``>= cutoff``, corners included): clean accuracy minus the accuracy under
  noise, mean over the noise levels (``bandnoise_drop_low``, ``bandnoise_drop_high``), and the
  clean accuracy (``bandnoise_clean``).

Radii are normalised (1.0 = Nyquist along an axis). Each measure has small defaults
(`MEASURES`); a study sets any of them, e.g. ``measures: {transfer: {omegas: 4}, heatmap: {}}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from models.app.analysis.spectra import reset_states
from models.app.analysis.transfer import (
    db_of,
    even_omegas,
    layer_transfers,
    neuron_filter,
    predicted_db,
)
from models.app.errors import UserError, shown
from models.energy import stage_of
from spectral import FourierHeatMap, LayerTransfer, band_noise_accuracy, fourier_heat_map

MEASURES: dict[str, dict[str, Any]] = {
    "transfer": {"images": 16, "T": 64, "warmup": 16, "eps": 0.5, "omegas": 4},
    "heatmap": {"images": 64, "eps": 0.3, "stride": 1, "cutoff": 0.5, "batch_size": 64},
    "bandnoise": {"images": 256, "levels": [0.2, 0.4], "cutoff": 0.5, "batch_size": 64},
}
"""Each measure's settings and their defaults: ``images`` the first held-out images it uses,
``T``/``warmup`` the steps of the transfer drive (``warmup`` unmeasured), ``eps`` the drive
amplitude (transfer, input units) or the basis norm relative to the image's (heat map),
``omegas`` how many drive frequencies (evenly spaced up to pi), ``stride`` the heat map's
frequency stride, ``cutoff`` the radius between low and high, ``levels`` the noise RMS
values, ``batch_size`` images per forward pass."""

_COUNTS = ("images", "T", "omegas", "stride", "batch_size")
"""Settings that are integers >= 1 (``warmup`` is an integer >= 0, the rest numbers > 0)."""


def _check_setting(key: str, value: Any, where: str) -> Any:
    """``value`` of setting ``key`` if valid; a `UserError` naming it otherwise."""
    integer = isinstance(value, int) and not isinstance(value, bool)
    if key in _COUNTS or key == "warmup":
        least = 0 if key == "warmup" else 1
        if not integer or value < least:
            raise UserError(f"{where}.{key} must be an integer >= {least}, got {shown(value)}")
        return value
    if key == "levels":
        if not isinstance(value, list) or not value or not all(
                _positive(level) for level in value):
            raise UserError(f"{where}.levels must be a non-empty list of numbers > 0 (noise "
                            f"RMS), got {shown(value)}")
        return [float(level) for level in value]
    if not _positive(value):
        raise UserError(f"{where}.{key} must be a number > 0, got {shown(value)}")
    return float(value)


def _positive(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def read_measures(value: Any, where: str) -> dict[str, dict[str, Any]]:
    """A study's ``measures`` key (None, a list of measure names, or a mapping of names to
    settings) as ``{measure: settings}``, defaults filled in; a `UserError` for an unknown
    measure, setting or bad value."""
    if value is None:
        return {}
    if isinstance(value, list):
        value = {name: None for name in value}
    if not isinstance(value, dict):
        raise UserError(f"{where}: measures must be a list of names or a mapping of names to "
                        f"settings ({', '.join(MEASURES)}), got {shown(value)}")
    measures = {}
    for name, settings in value.items():
        if name not in MEASURES:
            raise UserError(f"{where}: unknown measure {shown(name)}; valid measures: "
                            f"{', '.join(MEASURES)}")
        settings = settings or {}
        if not isinstance(settings, dict):
            raise UserError(f"{where}: measures.{name} must be a mapping of settings, got "
                            f"{shown(settings)}")
        unknown = sorted(map(str, set(settings) - set(MEASURES[name])))
        if unknown:
            raise UserError(f"{where}: unknown setting(s) {', '.join(unknown)} of measures."
                            f"{name}; valid: {', '.join(MEASURES[name])}")
        checked = {key: _check_setting(key, v, f"{where}: measures.{name}")
                   for key, v in settings.items()}
        measures[name] = {**MEASURES[name], **checked}
    transfer = measures.get("transfer")
    if transfer and transfer["T"] - transfer["warmup"] < 4:
        raise UserError(f"{where}: measures.transfer T {transfer['T']} with warmup "
                        f"{transfer['warmup']} leaves fewer than 4 measured steps")
    if transfer and transfer["omegas"] < 2:
        raise UserError(f"{where}: measures.transfer.omegas must be >= 2 (the gain is relative "
                        "to the lowest omega)")
    return measures


def stage_label(name: str) -> str:
    """The column suffix of the stage of layer ``name``: ``stage1``, ..., ``classifier``."""
    return stage_of(name)[0].replace(" ", "")


def transfer_summary(omega: np.ndarray, layers: Sequence[LayerTransfer],
                     filt: tuple[float | None, bool] | None) -> dict[str, float]:
    """``transfer_db_``, ``eq12_db_`` and ``floor_db_`` of the first probed layer
    (``first``) and of each stage's last one (see the module docstring): at ``omega[-1]``,
    in dB relative to the layer's gain at ``omega[0]``; ``filt``: `neuron_filter`."""
    chosen = {"first": layers[0]}
    for layer in layers:
        chosen[stage_label(layer.name)] = layer  # the last layer of each stage wins
    columns = {}
    for where, layer in chosen.items():
        columns[f"transfer_db_{where}"] = float(layer.gain_db[-1])
        columns[f"eq12_db_{where}"] = float(predicted_db(layer, omega, filt)[-1])
        columns[f"floor_db_{where}"] = float(db_of(layer.floor[-1], layer.gain[0]))
    return columns


def heat_map_summary(heat: FourierHeatMap, cutoff: float) -> dict[str, float]:
    """``heatmap_*`` columns of ``heat`` (see the module docstring)."""
    means = heat.band_means(cutoff)
    return {"heatmap_clean_error": heat.clean_error,
            **{f"heatmap_{key}": value for key, value in means.items()}}


def band_noise_summary(clean: float, accuracy: np.ndarray) -> dict[str, float]:
    """``bandnoise_*`` columns from `band_noise_accuracy`'s result for the bands (low,
    high): accuracy ``[2, levels]``."""
    drop = clean - np.asarray(accuracy, dtype=float).mean(axis=1)
    return {"bandnoise_clean": clean, "bandnoise_drop_low": float(drop[0]),
            "bandnoise_drop_high": float(drop[1])}


def _batches(images: torch.Tensor, labels: torch.Tensor,
             size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(images[i : i + size], labels[i : i + size]) for i in range(0, len(images), size)]


def network_measures(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     measures: dict[str, dict[str, Any]],
                     clip_model: Callable[[int], nn.Module], seed: int = 0) -> dict[str, float]:
    """The summaries of ``measures`` (`read_measures`) of ``model`` (eval mode, on the
    device of ``images [N, C, H, W]``, ``labels [N]``), each on its first ``images``;
    ``clip_model(T)`` is the same network taking clips of ``T`` steps (the transfer's drive);
    ``seed`` draws the heat map's signs and the band noise."""
    columns: dict[str, float] = {}
    before = partial(reset_states, model)
    if "transfer" in measures:
        s = measures["transfer"]
        clips = clip_model(s["T"])
        omega, layers, _ = layer_transfers(
            clips, [images[: s["images"]]], even_omegas(s["omegas"]), s["eps"], s["T"],
            s["warmup"], before=partial(reset_states, clips))
        columns.update(transfer_summary(omega, layers, neuron_filter(clips)))
    if "heatmap" in measures:
        s = measures["heatmap"]
        data = _batches(images[: s["images"]], labels[: s["images"]], s["batch_size"])
        heat = fourier_heat_map(model, data, s["eps"], s["stride"], seed, before=before)
        columns.update(heat_map_summary(heat, s["cutoff"]))
    if "bandnoise" in measures:
        s = measures["bandnoise"]
        data = _batches(images[: s["images"]], labels[: s["images"]], s["batch_size"])
        bands = [(math.ulp(0.0), s["cutoff"]), (s["cutoff"], math.sqrt(2.0) + 1e-9)]
        clean, accuracy = band_noise_accuracy(model, data, bands, s["levels"], seed,
                                              before=before)
        columns.update(band_noise_summary(clean, accuracy))
    return columns
