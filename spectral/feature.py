"""Spatial spectra of feature maps ``[..., H, W]`` (torch tensors or numpy arrays).

The 2-D FFT runs over the last two axes, in float64 on the tensor's device. Frequencies are
measured by their normalised radius ``r = sqrt(fy^2 + fx^2)``, where ``fy`` and ``fx`` are in
units of the Nyquist frequency of their axis, so ``r = 1`` is the Nyquist frequency along an
axis and ``r`` goes up to ``sqrt(2)`` in the corners. Radial bins are centred on multiples of
``2 / max(H, W)``, the frequency step of the longer axis, so the first bin holds the DC term
alone; bins that contain no frequency are left out.

By default (``average=True``) the spectra, not the maps, are averaged over all leading axes
(for spike tensors ``[T, B, C, H, W]``: over T, B and C): averaging the maps first would
cancel every component that is not in phase across maps. Pass ``average=False`` for one
result per map, with the leading shape ``[...]`` kept; average the maps yourself first
(e.g. ``x.mean(0)`` for a firing-rate map) to analyse a mean map. `SpectrumAccumulator`
averages over maps that arrive in several batches.

The relative log amplitude ("delta log amplitude", ``method=``):

- ``"radial"`` (default): ``log A(r) - log A(0)``, where ``A`` is the amplitude ``|F|``
  averaged over the maps and over the frequencies of each radial bin. Its summary point is
  ``r = 1``, the Nyquist frequency along an axis and the highest radius that every direction
  reaches (for an odd longer side, the last bin below 1).
- ``"diagonal"``: the convention of Park & Kim (ICLR 2022, ``fourier_analysis.ipynb``): the
  mean over maps of ``log(|F| + 1e-6)`` (``|F|`` of the unnormalised FFT) at the frequencies
  ``(j, j)``, ``0 <= j < min(H, W) / 2`` (the half-diagonal of the centred spectrum, from its
  centre towards a corner), minus the same at ``(0, 0)``. On square maps this is their curve.
  Its radii are the true ones, ``hypot(2j / H, 2j / W)``; its summary point is the last
  diagonal bin, the highest frequency of their figures.

Reading their figures next to ours: (1) their x axis, labelled ``0 ... 1.0 x pi``, is the bin
index ``j / (n - 1)`` over the ``n`` diagonal bins, so on ``h x h`` maps our radius is
``r = sqrt(2) (1 - 2/h) x``: plot against the radii, not the index. (2) A mean of logs is not
the log of a mean: on noise-like maps the two differ by a nearly constant offset per
frequency (white noise of zero mean: the diagonal curve lies about 0.24 above the log of the
mean amplitude at the same frequencies; maps with a non-zero mean, as spike maps have: about
0.17 below). (3) Silent maps (all zero) give ``log(1e-6)`` at every
frequency, 0 after subtracting DC: a share ``s`` of silent maps scales the diagonal curve by
``1 - s``, and leaves the radial one unchanged. (4) Content aligned with an axis (a grating
along x or y) has no power on the diagonal; the radial method averages all directions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import ArrayLike

__all__ = [
    "DIAGONAL_EPSILON",
    "METHODS",
    "Spectrum",
    "SpectrumAccumulator",
    "delta_log_amplitude",
    "high_frequency_ratio",
    "is_binary",
    "radial_profile",
]

CHUNK = 256  # maps transformed at a time when spectra are averaged
METHODS = ("radial", "diagonal")
DIAGONAL_EPSILON = 1e-6
"""Added to the unnormalised FFT amplitude before the log in the ``"diagonal"`` method."""


def is_binary(x: torch.Tensor) -> bool:
    """Whether every value of ``x`` (any shape) is 0 or 1: a spike tensor."""
    return bool(torch.logical_or(x == 0, x == 1).all())


def _check_maps(x: torch.Tensor | ArrayLike) -> torch.Tensor:
    """``x`` as a float64 tensor ``[..., H, W]`` (on its device) of finite real numbers."""
    if not isinstance(x, torch.Tensor):
        x = np.asarray(x)
        if np.iscomplexobj(x) or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise ValueError(f"feature maps must be real numbers, got dtype {x.dtype}")
        x = torch.from_numpy(x)
    elif x.is_complex():
        raise ValueError(f"feature maps must be real numbers, got dtype {x.dtype}")
    if x.ndim < 2 or x.shape[-2] < 2 or x.shape[-1] < 2:
        raise ValueError(
            f"feature maps must have shape [..., H, W] with H >= 2 and W >= 2, "
            f"got shape {tuple(x.shape)}"
        )
    if x.numel() == 0:
        raise ValueError(
            f"feature maps [..., H, W] must hold at least one map, got shape {tuple(x.shape)}"
        )
    x = x.detach().to(torch.float64)
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"feature maps must be finite, got {bad} nan or inf values")
    return x


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")


def _diagonal_bins(h: int, w: int) -> int:
    """Number of half-diagonal frequencies ``(j, j)``, ``j < min(H, W) / 2``."""
    return (min(h, w) + 1) // 2


def _fft_stats(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Power ``|F|^2 / (H W)^2`` ``[..., H, W]`` (it sums to the mean square), amplitude
    ``|F| / (H W)`` ``[..., H, W]`` and the diagonal log amplitude ``log(|F| + eps)`` at
    ``(j, j)`` ``[..., J]`` of float64 maps ``[..., H, W]``."""
    h, w = maps.shape[-2:]
    magnitude = torch.fft.fft2(maps).abs()
    j = torch.arange(_diagonal_bins(h, w), device=maps.device)
    log_diagonal = torch.log(magnitude[..., j, j] + DIAGONAL_EPSILON)
    amplitude = magnitude / float(h * w)
    return amplitude**2, amplitude, log_diagonal


def _radius(h: int, w: int) -> np.ndarray:
    """Normalised radius ``[H, W]`` of each FFT frequency (1.0 = Nyquist along an axis)."""
    fy = 2.0 * np.fft.fftfreq(h)
    fx = 2.0 * np.fft.fftfreq(w)
    return np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def _diagonal_radii(h: int, w: int) -> np.ndarray:
    j = np.arange(_diagonal_bins(h, w), dtype=float)
    return np.hypot(2.0 * j / h, 2.0 * j / w)


def _radial(spectra: np.ndarray, statistic: str) -> tuple[np.ndarray, np.ndarray]:
    """Sum or mean of ``spectra [..., H, W]`` per radial bin: ``(radii, values [..., K])``."""
    h, w = spectra.shape[-2:]
    step = 2.0 / max(h, w)
    index = np.rint(_radius(h, w) / step).astype(np.int64).ravel()
    order = np.argsort(index, kind="stable")
    bins, starts, counts = np.unique(index[order], return_index=True, return_counts=True)
    flat = spectra.reshape(*spectra.shape[:-2], h * w)[..., order]
    values = np.add.reduceat(flat, starts, axis=-1)
    if statistic == "mean":
        values = values / counts
    return bins * step, values


def _relative(log_amplitude: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return log_amplitude - log_amplitude[..., :1]


def _delta(
    amplitude: np.ndarray, log_diagonal: np.ndarray, method: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(radii, delta)`` of the relative log amplitude of ``method`` from the (mean or
    per-map) amplitude ``[..., H, W]`` and diagonal log amplitude ``[..., J]``."""
    if method == "diagonal":
        h, w = amplitude.shape[-2:]
        return _diagonal_radii(h, w), _relative(log_diagonal)
    radii, amplitude = _radial(amplitude, "mean")
    with np.errstate(divide="ignore"):
        return radii, _relative(np.log(amplitude))


def _summary_index(radii: np.ndarray, method: str) -> int:
    """Index of the documented summary point of ``method`` among its ``radii``."""
    if method == "diagonal":
        return radii.size - 1
    return int(np.flatnonzero(radii <= 1.0 + 1e-9)[-1])


def _check_cutoff(cutoff: float) -> None:
    if not 0.0 < cutoff <= math.sqrt(2.0):
        raise ValueError(
            f"cutoff must be a normalised radius in (0, sqrt(2)] (1.0 is the Nyquist "
            f"frequency along an axis), got {cutoff!r}"
        )


def _high_frequency_ratio(power: np.ndarray, cutoff: float) -> np.ndarray:
    radius = _radius(*power.shape[-2:])
    high = (power * (radius >= cutoff)).sum(axis=(-2, -1))
    low = (power * ((radius > 0) & (radius < cutoff))).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return high / (high + low)


@dataclass(frozen=True, eq=False)
class Spectrum:
    """The spectrum of ``maps`` maps of size ``size`` (H, W), averaged over the maps.

    ``power`` is the radial power profile at ``radii`` (see `radial_profile`);
    ``delta_log_amplitude`` the relative log amplitude of ``method`` at ``delta_radii`` (see
    `delta_log_amplitude`), and ``summary_delta`` its value at the method's summary point
    ``summary_radius``; ``high_frequency_ratio`` the share of non-DC power at radius >=
    ``cutoff`` (nan for constant maps).
    """

    maps: int
    size: tuple[int, int]
    method: str
    cutoff: float
    high_frequency_ratio: float
    summary_radius: float
    summary_delta: float
    radii: np.ndarray = field(repr=False)
    power: np.ndarray = field(repr=False)
    delta_radii: np.ndarray = field(repr=False)
    delta_log_amplitude: np.ndarray = field(repr=False)


class SpectrumAccumulator:
    """Average spectra over maps ``[..., H, W]`` that arrive in several batches.

    Each `add` transforms its maps (``CHUNK`` at a time, in float64 on their device) and keeps
    only sums of size ``[H, W]``; `spectrum` gives the `Spectrum` of all maps added so far.
    """

    def __init__(self) -> None:
        self.maps = 0
        self.size: tuple[int, int] | None = None
        self._sums: list[torch.Tensor] | None = None

    def add(self, x: torch.Tensor | ArrayLike) -> None:
        """Add the maps of ``x`` ``[..., H, W]`` (all of one size ``H, W``)."""
        x = _check_maps(x)
        size = tuple(x.shape[-2:])
        if self.size is not None and size != self.size:
            raise ValueError(f"maps of size {size} cannot join maps of size {self.size}")
        maps = x.reshape(-1, *size)
        for start in range(0, maps.shape[0], CHUNK):
            sums = [s.sum(0) for s in _fft_stats(maps[start : start + CHUNK])]
            self._sums = sums if self._sums is None else [a + b for a, b in zip(
                self._sums, sums, strict=True)]
        self.size = size
        self.maps += maps.shape[0]

    def means(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean power and amplitude ``[H, W]`` and diagonal log amplitude ``[J]``."""
        if self._sums is None:
            raise ValueError("no maps were added")
        return tuple((s / self.maps).cpu().numpy() for s in self._sums)

    def spectrum(self, method: str = "radial", cutoff: float = 0.5) -> Spectrum:
        """The `Spectrum` of the maps added so far."""
        _check_method(method)
        _check_cutoff(cutoff)
        power, amplitude, log_diagonal = self.means()
        radii, radial_power = _radial(power, "sum")
        delta_radii, delta = _delta(amplitude, log_diagonal, method)
        point = _summary_index(delta_radii, method)
        return Spectrum(
            maps=self.maps,
            size=self.size,
            method=method,
            cutoff=cutoff,
            high_frequency_ratio=float(_high_frequency_ratio(power, cutoff)),
            summary_radius=float(delta_radii[point]),
            summary_delta=float(delta[point]),
            radii=radii,
            power=radial_power,
            delta_radii=delta_radii,
            delta_log_amplitude=delta,
        )


def _spectra(x: torch.Tensor | ArrayLike, average: bool) -> tuple[np.ndarray, ...]:
    """Power ``[..., H, W]``, amplitude ``[..., H, W]`` and diagonal log amplitude
    ``[..., J]`` of the maps ``x``; or their means over all maps (``[H, W]``, ``[J]``)."""
    if average:
        accumulator = SpectrumAccumulator()
        accumulator.add(x)
        return accumulator.means()
    return tuple(s.cpu().numpy() for s in _fft_stats(_check_maps(x)))


def radial_profile(
    x: torch.Tensor | ArrayLike, average: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Radial power profile of feature maps ``x [..., H, W]``.

    Returns:
        ``(radii, power)``: the ``K`` bin centres (normalised radius, 0 to about sqrt(2)), and
        the power in each bin, ``[K]`` (or ``[..., K]`` when ``average=False``). The power of
        a bin is the part of the mean square of the map carried by its frequencies, so
        ``power.sum(-1)`` equals ``(x ** 2).mean()`` over the maps (Parseval).
    """
    power, _, _ = _spectra(x, average)
    return _radial(power, "sum")


def delta_log_amplitude(
    x: torch.Tensor | ArrayLike, average: bool = True, method: str = "radial"
) -> tuple[np.ndarray, np.ndarray]:
    """Relative log amplitude of feature maps ``x [..., H, W]`` (natural log).

    ``method="radial"``: ``log A(r) - log A(0)``, ``A`` the amplitude ``|F|`` averaged over the
    maps (when ``average``) and over the frequencies of each radial bin; averaging before the
    log keeps silent spike maps from giving ``-inf``. Zero amplitudes follow IEEE arithmetic:
    ``-inf`` at radii without amplitude, ``+inf`` where only the DC amplitude is zero, ``nan``
    where both are. ``method="diagonal"``: Park & Kim's half-diagonal curve, the mean (when
    ``average``) of ``log(|F| + 1e-6)`` at ``(j, j)`` minus its value at ``(0, 0)``. The module
    docstring says how the two differ.

    Returns:
        ``(radii, delta)``: ``K`` normalised radii and the relative log amplitude ``[K]`` (or
        ``[..., K]`` when ``average=False``); ``delta[..., 0]`` is 0.
    """
    _check_method(method)
    _, amplitude, log_diagonal = _spectra(x, average)
    return _delta(amplitude, log_diagonal, method)


def high_frequency_ratio(
    x: torch.Tensor | ArrayLike, cutoff: float = 0.5, average: bool = True
) -> float | np.ndarray:
    """Share of the non-DC power of feature maps ``x [..., H, W]`` at radius >= ``cutoff``.

    ``cutoff`` is a normalised radius in ``(0, sqrt(2)]``. Returns a float in ``[0, 1]`` for
    the power averaged over maps, or an array ``[...]`` when ``average=False``; ``nan`` for
    constant maps, which have no non-DC power.
    """
    _check_cutoff(cutoff)
    power, _, _ = _spectra(x, average)
    ratio = _high_frequency_ratio(power, cutoff)
    return float(ratio) if average else ratio
