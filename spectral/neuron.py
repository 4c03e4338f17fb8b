"""Temporal frequency response of spiking neurons, in closed form and by simulation.

Frequencies ``omega`` are in radians per time step, in ``[0, pi]``.

A *neuron callable* is any callable that maps a float tensor ``x`` of shape ``[T, N]``
(time first, ``N`` independent neurons) to a tensor of the same shape ``[T, N]``: spikes,
membrane potentials or any other per-neuron signal. Each call must start from the neuron's
rest state (reset stateful modules, e.g. spikingjelly nodes, inside the callable).
Examples: ``torch.relu``, ``lambda x: lif_multistep(x, tau=2.0)``, or a wrapper that runs a
spikingjelly multi-step node and returns its spikes or its ``v_seq``.
"""

import math
from collections.abc import Callable

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy import signal

__all__ = [
    "cascade_transfer",
    "estimate_transfer_welch",
    "lif_cutoff",
    "measure_neuron_response",
    "neuron_transfer",
]

NeuronCallable = Callable[[torch.Tensor], torch.Tensor]


def _check_tau(tau: float) -> None:
    if not tau >= 1.0:
        raise ValueError(f"tau must be a number >= 1 (or None for IF), got {tau!r}")


def neuron_transfer(
    omega: ArrayLike, tau: float | None = 2.0, decay_input: bool = True
) -> np.ndarray:
    """Sub-threshold membrane response ``H(e^{j omega})`` of a LIF (or IF) neuron.

    With ``beta = 1 - 1/tau``:

    - ``decay_input=True``: ``H(z) = (1/tau) / (1 - beta z^-1)`` (DC gain 1, gain at pi
      ``1 / (2 tau - 1)``);
    - ``decay_input=False``: ``H(z) = 1 / (1 - beta z^-1)``;
    - ``tau=None`` (IF): ``H(z) = 1 / (1 - z^-1)``, infinite at ``omega = 0``.

    Returns a complex array of the shape of ``omega``.
    """
    z_inv = np.exp(-1j * np.asarray(omega, dtype=float))
    if tau is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 / (1.0 - z_inv)
    _check_tau(tau)
    beta = 1.0 - 1.0 / tau
    gain = 1.0 / tau if decay_input else 1.0
    return gain / (1.0 - beta * z_inv)


def cascade_transfer(
    omega: ArrayLike, layers: int, tau: float | None = 2.0, decay_input: bool = True
) -> np.ndarray:
    """Response ``H^L`` of ``layers`` identical neurons in series (see `neuron_transfer`)."""
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise ValueError(f"layers must be an integer >= 1, got {layers!r}")
    return neuron_transfer(omega, tau, decay_input) ** layers


def lif_cutoff(tau: ArrayLike) -> float | np.ndarray:
    """-3 dB cut-off of the LIF filter in rad per step, relative to its DC gain.

    Solves ``cos(omega_c) = 1 - (1 - beta)^2 / (2 beta)``, ``beta = 1 - 1/tau``; the same for
    both ``decay_input`` settings, which differ only by a constant factor. For
    ``tau < (1 + sqrt(2)) / 2`` (about 1.207) the gain never falls 3 dB within
    ``[0, pi]`` and the cut-off is ``math.inf``. Accepts a scalar (returns a float) or an
    array of ``tau >= 1`` (returns an array).
    """
    tau_arr = np.asarray(tau, dtype=float)
    if not np.all(tau_arr >= 1.0):
        raise ValueError(f"tau must be >= 1 (a LIF time constant), got {tau!r}")
    beta = 1.0 - 1.0 / tau_arr
    with np.errstate(divide="ignore", invalid="ignore"):
        cos_c = 1.0 - (1.0 - beta) ** 2 / (2.0 * beta)
    cutoff = np.where(cos_c >= -1.0, np.arccos(np.clip(cos_c, -1.0, 1.0)), math.inf)
    return float(cutoff) if cutoff.ndim == 0 else cutoff


def _run_neuron(neuron: NeuronCallable, x: torch.Tensor) -> np.ndarray:
    """Call ``neuron`` on ``x`` of shape ``[T, N]``; returns its output as float64 numpy."""
    with torch.no_grad():
        y = neuron(x)
    if not isinstance(y, torch.Tensor):
        raise TypeError(
            f"the neuron callable must return a torch.Tensor of shape [T, N], "
            f"got {type(y).__name__}"
        )
    if y.shape != x.shape:
        raise ValueError(
            f"the neuron callable must map [T, N] to [T, N]: input {tuple(x.shape)} "
            f"gave output {tuple(y.shape)}"
        )
    y = y.detach().to(device="cpu", dtype=torch.float64).numpy()
    bad = y.size - np.count_nonzero(np.isfinite(y))
    if bad:
        raise ValueError(f"the neuron callable must return finite values, got {bad} nan or inf")
    return y


def _check_drive(steps: int, warmup: int, neurons: int) -> None:
    for name, value, low in (("steps", steps, 4), ("warmup", warmup, 0), ("neurons", neurons, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_level(name: str, value: float, positive: bool = False, zero: bool = False) -> None:
    """A finite drive level: any number, or > 0 (``positive``), or >= 0 (``zero``)."""
    low = " > 0" if positive else " >= 0" if zero else ""
    number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or (positive and value <= 0) or (
            zero and value < 0):
        raise ValueError(f"{name} must be a finite number{low}, got {value!r}")


def measure_neuron_response(
    neuron: NeuronCallable,
    omegas: ArrayLike,
    bias: float = 0.0,
    amplitude: float = 0.1,
    noise: float = 0.0,
    steps: int = 1024,
    warmup: int = 256,
    neurons: int = 64,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Complex response of ``neuron`` at each drive frequency, measured by simulation.

    Each of ``neurons`` neurons per frequency gets ``bias + amplitude * sin(omega t + phi)``
    with its own random phase ``phi``, plus Gaussian white noise of standard deviation
    ``noise`` (which dithers a spiking neuron out of mode locking with the drive), for
    ``warmup + steps`` steps; all frequencies run in one call of shape
    ``[warmup + steps, len(omegas) * neurons]``. After the warm-up, a lock-in
    least-squares fit ``y = c + p sin(omega t + phi) + q cos(omega t + phi)`` per neuron gives
    the response ``(p + j q) / amplitude``, averaged over the population.

    Args:
        neuron: a neuron callable ``[T, N] -> [T, N]`` (see the module docstring).
        omegas: drive frequencies in rad per step, each in the open interval ``(0, pi)``.

    Returns:
        complex array of the shape of ``omegas``; the gain is its absolute value.
    """
    omega = np.asarray(omegas, dtype=float)
    if omega.size == 0 or not np.all((omega > 0) & (omega < math.pi)):
        raise ValueError(f"omegas must lie in the open interval (0, pi), got {omegas!r}")
    _check_level("bias", bias)
    _check_level("amplitude", amplitude, positive=True)
    _check_level("noise", noise, zero=True)
    _check_drive(steps, warmup, neurons)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0.0, 2.0 * math.pi, size=(omega.size, neurons))
    t = np.arange(warmup + steps, dtype=float)
    # theta: [T, F, neurons]
    theta = t[:, None, None] * omega.reshape(-1)[None, :, None] + phase[None]
    x = bias + amplitude * np.sin(theta) + noise * rng.standard_normal(theta.shape)
    y = _run_neuron(neuron, torch.as_tensor(x.reshape(t.size, -1), dtype=dtype, device=device))
    y = y[warmup:].reshape(steps, omega.size, neurons)
    theta = theta[warmup:]
    basis = np.stack([np.ones_like(theta), np.sin(theta), np.cos(theta)], axis=-1)
    gram = np.einsum("tfni,tfnk->fnik", basis, basis)
    rhs = np.einsum("tfni,tfn->fni", basis, y)
    coef = np.linalg.solve(gram, rhs[..., None])[..., 0]
    response = (coef[..., 1] + 1j * coef[..., 2]) / amplitude
    return response.mean(axis=-1).reshape(omega.shape)


def estimate_transfer_welch(
    neuron: NeuronCallable,
    bias: float = 0.0,
    std: float = 0.1,
    steps: int = 4096,
    warmup: int = 256,
    neurons: int = 64,
    nperseg: int = 256,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Estimate the response of ``neuron`` from a white-noise drive.

    Drives ``neurons`` neurons with ``bias + std * n(t)``, ``n`` Gaussian white noise, for
    ``warmup + steps`` steps, and returns ``H = P_xy / P_xx`` from the cross-spectrum
    (`scipy.signal.csd`) and the input auto-spectrum (`scipy.signal.welch`), each averaged
    over the population before the division. Both use a Hann window of ``nperseg`` steps
    and remove the mean of each segment, so the estimate at ``omega = 0`` is unreliable.

    Returns:
        ``(omegas, h)``: ``nperseg // 2 + 1`` frequencies in rad per step from 0 to pi, and
        the complex response there.
    """
    _check_drive(steps, warmup, neurons)
    _check_level("bias", bias)
    _check_level("std", std, positive=True)
    if isinstance(nperseg, bool) or not isinstance(nperseg, int) or not 2 <= nperseg <= steps:
        raise ValueError(f"nperseg must be an integer in [2, steps={steps}], got {nperseg!r}")
    rng = np.random.default_rng(seed)
    x = bias + std * rng.standard_normal((warmup + steps, neurons))
    y = _run_neuron(neuron, torch.as_tensor(x, dtype=dtype, device=device))
    x, y = x[warmup:], y[warmup:]
    freq, p_xy = signal.csd(x, y, nperseg=nperseg, axis=0)
    _, p_xx = signal.welch(x, nperseg=nperseg, axis=0)
    return 2.0 * math.pi * freq, p_xy.mean(axis=-1) / p_xx.mean(axis=-1)
