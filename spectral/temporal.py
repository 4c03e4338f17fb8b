"""Temporal transfer through the layers of a network: a sinusoid on the input, lock-in per layer.

The paper's Eq. 11-12: with the firing rate linearised, a spiking layer passes
``k W(z) (1 - beta) / (1 - beta z^-1)`` and L layers the product, so each spiking layer
low-pass filters in time. `temporal_transfer` measures that on any network that takes clips
(a time axis in its input): every image gets a temporal sinusoid of amplitude ``eps`` added to
every pixel over ``warmup + steps`` time steps (as a cosine, ``eps cos(omega t)``, which unlike
the sine does not vanish at ``omega = pi``), and each probed layer's output is fitted per element
with ``c + p sin(omega t) + q cos(omega t)`` after the warm-up (a lock-in), less the same
layer's output without drive (what a spiking layer does on its own, such as the oscillation of
a neuron under constant input, is not the drive's); its response is ``q - j p`` (the complex
gain of a linear time-invariant layer). Frequencies ``omega`` are in
rad per step, in ``(0, pi]``.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy import signal
from torch import nn

from .neuron import cascade_transfer

__all__ = [
    "LayerTransfer",
    "check_omegas",
    "predicted_gain_db",
    "spike_train_spectrum",
    "temporal_transfer",
]


@dataclass(frozen=True, eq=False)
class LayerTransfer:
    """The temporal transfer from the input to one layer's output, at each drive frequency.

    - ``gain [F]``: root mean square over the layer's output elements of their lock-in
      response per unit drive; ``gain_db [F]``: the same in dB relative to the lowest omega.
    - ``phase [F]``: the phase (rad) of each element's response relative to its own at the
      lowest omega, averaged with weights ``|R(omega)| |R(omega_0)|`` (output signs cancel).
    - ``floor [F]``: the gain the lock-in would read from the fit's residual were it white
      noise (its standard error: a gain at or below it means nothing).
    - ``slope``: the layer's rate against a constant drive, root mean square over elements
      (the ``k`` of Eq. 9-10, times ``W``).
    - ``neurons``: how many probed neurons ran before or at this layer, in call order (the
      ``L`` of its Eq. 12 prediction).
    - ``spectrum [K]``: the mean power spectrum of its output over time without drive (the
      paper's Fig. 3 view), at the ``spectrum_omegas`` of `temporal_transfer`'s result.
    """

    name: str
    module_type: str
    neuron: bool
    neurons: int
    gain: np.ndarray
    gain_db: np.ndarray
    phase: np.ndarray
    floor: np.ndarray
    slope: float
    spectrum: np.ndarray


def check_omegas(omegas: ArrayLike) -> np.ndarray:
    """``omegas`` as a sorted float array, each in ``(0, pi]``; a ValueError names the bad one."""
    omega = np.asarray(omegas, dtype=float).reshape(-1)
    if omega.size == 0:
        raise ValueError("give at least one frequency omega in (0, pi]")
    bad = [float(w) for w in omega if not 0.0 < w <= math.pi]
    if bad:
        raise ValueError(f"omega {bad[0]!r} is outside (0, pi] (rad per time step)")
    return np.sort(omega)


def predicted_gain_db(
    omegas: ArrayLike, layers: int, tau: float | None = 2.0, decay_input: bool = True
) -> np.ndarray:
    """Eq. 12's gain of ``layers`` LIF layers in dB relative to the lowest of ``omegas``
    (0 dB everywhere for ``layers = 0``); ``k`` and the static weights ``W`` cancel."""
    omega = check_omegas(omegas)
    if layers == 0:
        return np.zeros_like(omega)
    gain = np.abs(cascade_transfer(omega, layers, tau, decay_input))
    return 20.0 * np.log10(gain / gain[0])


def spike_train_spectrum(
    x: torch.Tensor | ArrayLike, time_axis: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Mean power spectrum over time of signals ``x`` (spike trains ``[T, ...]``).

    Periodogram of each element along ``time_axis`` (mean removed, `scipy.signal.periodogram`),
    averaged over all other axes. Returns ``(omegas, power)``: ``T // 2 + 1`` frequencies in
    rad per step from 0 to pi, and the power there.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    x = np.moveaxis(np.asarray(x, dtype=float), time_axis, 0)
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 time steps, got shape {x.shape}")
    freq, power = signal.periodogram(x.reshape(x.shape[0], -1), axis=0)
    return 2.0 * math.pi * freq, power.mean(axis=-1)


class _Layer:
    """Running sums of one probed module over batches."""

    def __init__(self, name: str, module: nn.Module, neuron: bool, neurons: int, freqs: int):
        self.name, self.module_type, self.neuron, self.neurons = (
            name, type(module).__name__, neuron, neurons)
        self.power = np.zeros(freqs)
        self.cross = np.zeros(freqs, dtype=complex)
        self.floor = np.zeros(freqs)
        self.slope = 0.0
        self.elements = 0
        self.spectrum: np.ndarray | None = None
        self.reference: torch.Tensor | None = None


def _lock_in(y: torch.Tensor, omega: float, warmup: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lock-in of signals ``y [T, N]`` after ``warmup`` steps, fitted by least squares with a
    constant, ``sin(omega t)`` and ``cos(omega t)``: the complex responses ``q - j p`` ``[N]``
    and the expected ``|q - j p|^2`` ``[N]`` of the fit's residual were it white noise."""
    t = np.arange(y.shape[0], dtype=float)[warmup:]
    basis = np.stack([np.ones_like(t), np.sin(omega * t), np.cos(omega * t)], axis=1)
    pinv = np.linalg.pinv(basis, rcond=1e-9)
    y = y[warmup:]
    coef = torch.as_tensor(pinv, dtype=torch.float64, device=y.device) @ y
    residual = y - torch.as_tensor(basis, dtype=torch.float64, device=y.device) @ coef
    rank = np.linalg.matrix_rank(basis, tol=1e-9 * np.abs(basis).max())
    variance = residual.pow(2).sum(0) / max(len(t) - rank, 1)
    spread = float((pinv[1] ** 2).sum() + (pinv[2] ** 2).sum())
    return torch.complex(coef[2], -coef[1]), variance * spread


def temporal_transfer(
    model: nn.Module,
    images: torch.Tensor | Sequence[torch.Tensor],
    omegas: ArrayLike,
    eps: float = 0.1,
    steps: int = 64,
    warmup: int = 16,
    types: type | tuple[type, ...] = (),
    names: str | Sequence[str] = (),
    neuron_types: type | tuple[type, ...] = (),
    time_axis: int = 1,
    layer_time_axis: int = 0,
    progress: Callable[[int], None] | None = None,
    before: Callable[[], None] | None = None,
) -> tuple[np.ndarray, list[LayerTransfer], np.ndarray]:
    """Gain and phase from the input to each probed layer at each drive frequency.

    Args:
        model: takes clips: ``images`` with a time axis inserted at ``time_axis`` (the zoo's
            ``[B, T, C, H, W]``, ``T = warmup + steps``); it must not hold state between calls.
        images: a batch ``[B, C, H, W]`` or a sequence of batches.
        omegas: drive frequencies in rad per step, in ``(0, pi]``.
        eps: drive amplitude, added to every pixel, in the input's units (> 0).
        types, names: modules to probe, by class or ``fnmatch`` pattern of their name.
        neuron_types: the probed modules that count as spiking neurons for Eq. 12.
        layer_time_axis: the time axis of the probed outputs (time-major: 0).
        progress: called with 1 after each forward pass.
        before: called before each forward pass (to reset a stateful network).

    Returns:
        ``(omegas, layers, spectrum_omegas)``: the sorted frequencies ``[F]``, one
        `LayerTransfer` per probed module in call order, and the ``[K]`` frequencies of
        their spectra.
    """
    omega = check_omegas(omegas)
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    if steps < 4 or warmup < 0:
        raise ValueError(f"steps must be >= 4 and warmup >= 0, got {steps!r} and {warmup!r}")
    types = (types,) if isinstance(types, type) else tuple(types)
    neuron_types = (neuron_types,) if isinstance(neuron_types, type) else tuple(neuron_types)
    names = (names,) if isinstance(names, str) else tuple(names)
    modules = [(n, m) for n, m in model.named_modules()
               if isinstance(m, types) or any(fnmatch.fnmatchcase(n, p) for p in names)]
    if not modules:
        available = [n for n, _ in model.named_modules() if n][:20]
        raise ValueError(f"no module of the {type(model).__name__} matches types={types!r} or "
                         f"names={names!r}; its modules include {available}")
    neurons = {n for n, m in modules if isinstance(m, neuron_types)}
    batches = [images] if isinstance(images, torch.Tensor) else list(images)
    length = warmup + steps
    t = torch.arange(length, dtype=torch.float64)
    outputs: dict[str, torch.Tensor] = {}
    order: list[str] = []

    def hook(name: str, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"probed module {name} returned a {type(output).__name__}, "
                             "not a tensor")
        if name in outputs:
            raise ValueError(f"probed module {name} ran twice in one forward pass")
        y = output.detach().movedim(layer_time_axis, 0)
        if y.shape[0] != length:
            raise ValueError(f"the output of {name} has {y.shape[0]} steps on axis "
                             f"{layer_time_axis}, not the {length} of the drive")
        outputs[name] = y.reshape(length, -1).double()
        if name not in order:
            order.append(name)

    def run(x: torch.Tensor, drive: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs.clear()
        if before is not None:
            before()
        shape = [1] * (x.ndim + 1)
        shape[time_axis] = length
        clip = x.unsqueeze(time_axis) + drive.to(x.dtype).reshape(shape).to(x.device)
        model(clip)
        if progress is not None:
            progress(1)
        return dict(outputs)

    layers: dict[str, _Layer] = {}
    handles = [m.register_forward_hook(partial(hook, n)) for n, m in modules]
    try:
        with torch.no_grad():
            for x in batches:
                rest = run(x, torch.zeros(length))
                up = run(x, torch.full((length,), float(eps)))
                down = run(x, torch.full((length,), -float(eps)))
                driven: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
                for w in omega:
                    for name, y in run(x, eps * torch.cos(w * t)).items():
                        driven.setdefault(name, []).append(_lock_in(y - rest[name], w, warmup))
                count = 0
                for name in order:
                    if name in neurons:
                        count += 1
                    if name not in layers:
                        module = dict(modules)[name]
                        layers[name] = _Layer(name, module, name in neurons, count, omega.size)
                    layer = layers[name]
                    response = torch.stack([r for r, _ in driven[name]]) / eps  # [F, N]
                    noise = torch.stack([n for _, n in driven[name]]) / eps ** 2
                    layer.power += (response.abs() ** 2).sum(1).cpu().numpy()
                    layer.cross += (response * response[0].conj()).sum(1).cpu().numpy()
                    layer.floor += noise.sum(1).cpu().numpy()
                    rate = (up[name][warmup:].mean(0) - down[name][warmup:].mean(0)) / (2 * eps)
                    layer.slope += float((rate ** 2).sum())
                    layer.elements += response.shape[1]
                    _, power = spike_train_spectrum(rest[name][warmup:])
                    layer.spectrum = power if layer.spectrum is None else layer.spectrum + power
    finally:
        for handle in handles:
            handle.remove()
    results = []
    for name in order:
        layer = layers[name]
        gain = np.sqrt(layer.power / layer.elements)
        with np.errstate(divide="ignore", invalid="ignore"):
            gain_db = 20.0 * np.log10(gain / gain[0])
            phase = np.angle(layer.cross)
        results.append(LayerTransfer(
            name=name, module_type=layer.module_type, neuron=layer.neuron,
            neurons=layer.neurons, gain=gain, gain_db=gain_db, phase=phase,
            floor=np.sqrt(layer.floor / layer.elements),
            slope=math.sqrt(layer.slope / layer.elements),
            spectrum=layer.spectrum / len(batches)))
    spectrum_omegas = 2.0 * math.pi * np.fft.rfftfreq(steps)
    return omega, results, spectrum_omegas
