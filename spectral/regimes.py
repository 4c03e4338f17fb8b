"""Regimes of a spiking neuron: where its spike output is the low-pass filter theory says.

The gain of a neuron at temporal frequency ``omega`` (rad per step), relative to its gain at
a low reference frequency ``omega_ref`` (IF's membrane has no finite gain at 0), by three
methods:

1. *closed form*: the sub-threshold membrane ``|H(omega)| / |H(omega_ref)|``
   (`spectral.neuron_transfer`);
2. *firing-rate linearisation* (the paper's argument, its Eq. 9-11): the spike train is a
   linear read-out ``S ~ r + k (u - mu)`` of the membrane potential ``u`` the input makes
   without reset, with ``k = d rate / d V`` the slope of the neuron's stationary rate curve
   at the operating point; ``V`` is the stationary membrane potential, which for the
   decay-input LIF equals the input bias ``mu`` (DC gain 1). The spikes then inherit the
   membrane's filter: ``G(omega) = k H(omega) / |H(omega_ref)|``, normalised at
   ``omega_ref`` so that it is also defined for IF; its relative gain is the closed form's;
3. *simulation* of the spike output (`spectral.measure_neuron_response` on a neuron
   callable, see `spectral.neuron`).

`rate_curve` and `rate_slope` measure the rate curve by simulation, `linearised_response`
builds method 2, `relative_gain` and `high_frequency_gain_db` summarise a response.
"""

import math

import numpy as np
import torch
from numpy.typing import ArrayLike

from .neuron import NeuronCallable, _check_drive, _run_neuron, neuron_transfer

__all__ = [
    "high_frequency_gain_db",
    "linearised_response",
    "rate_curve",
    "rate_slope",
    "relative_gain",
]



def rate_curve(
    neuron: NeuronCallable,
    biases: ArrayLike,
    noise: float = 0.0,
    steps: int = 2048,
    warmup: int = 256,
    neurons: int = 256,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Stationary firing rate (mean output per step) at each constant input bias.

    Each of ``neurons`` neurons per bias gets ``bias + noise * n(t)``, ``n`` Gaussian white
    noise, for ``warmup + steps`` steps; the mean of the output after the warm-up is the
    rate. Every bias sees the same noise (common random numbers), so differences between
    nearby biases are smooth. All biases run in one call ``[warmup + steps, len(biases) *
    neurons]``. Returns an array of the shape of ``biases``.
    """
    bias = np.asarray(biases, dtype=float)
    if bias.size == 0 or not np.all(np.isfinite(bias)):
        raise ValueError(f"biases must be a non-empty array of finite numbers, got {biases!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    _check_drive(steps, warmup, neurons)
    rng = np.random.default_rng(seed)
    dither = noise * rng.standard_normal((warmup + steps, 1, neurons))
    x = (bias.reshape(1, -1, 1) + dither).reshape(warmup + steps, -1)
    y = _run_neuron(neuron, torch.as_tensor(x, dtype=dtype, device=device))
    rates = y[warmup:].reshape(steps, bias.size, neurons).mean(axis=(0, 2))
    return rates.reshape(bias.shape)


def rate_slope(
    neuron: NeuronCallable, bias: float, noise: float = 0.0, delta: float = 0.05, **drive
) -> tuple[float, float]:
    """``(rate, k)``: the rate at ``bias`` and the slope ``k = d rate / d bias`` of the rate
    curve there, by the central difference over ``bias +- delta`` (`rate_curve`, whose
    keyword arguments ``drive`` takes)."""
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta!r}")
    low, mid, high = rate_curve(neuron, [bias - delta, bias, bias + delta], noise, **drive)
    return float(mid), float((high - low) / (2.0 * delta))


def linearised_response(
    omega: ArrayLike, tau: float | None, slope: float, omega_ref: float
) -> np.ndarray:
    """Firing-rate linearisation ``k H(omega) / |H(omega_ref)|`` (complex, shape of
    ``omega``) of a LIF neuron (IF for ``tau=None``) whose rate curve has slope ``k``; see
    the module docstring."""
    if not 0 < omega_ref < math.pi:
        raise ValueError(f"omega_ref must lie in (0, pi), got {omega_ref!r}")
    reference = abs(complex(neuron_transfer(omega_ref, tau)))
    return slope * neuron_transfer(omega, tau) / reference


def relative_gain(response: ArrayLike, reference: int = 0) -> np.ndarray:
    """``|response| / |response[reference]|``: the gain relative to the one at a reference
    frequency (by default the first, lowest); nan where that gain is 0."""
    gain = np.abs(np.asarray(response))
    with np.errstate(divide="ignore", invalid="ignore"):
        return gain / gain[..., reference : reference + 1]


def high_frequency_gain_db(
    omegas: ArrayLike, relative: ArrayLike, above: float = math.pi / 2
) -> float:
    """Mean relative gain in dB over the frequencies ``>= above``: how much of the high
    frequencies a neuron keeps (0 dB: as much as of the low ones)."""
    omega = np.asarray(omegas, dtype=float)
    gain = np.asarray(relative, dtype=float)
    keep = omega >= above
    if not keep.any():
        raise ValueError(f"no frequency >= {above!r} among {omegas!r}")
    with np.errstate(divide="ignore"):
        return float(np.mean(20.0 * np.log10(gain[keep])))
