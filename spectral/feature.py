"""Spatial spectra of feature maps ``[..., H, W]`` (torch tensors or numpy arrays).

The 2-D FFT runs over the last two axes. Frequencies are measured by their normalised radius
``r = sqrt(fy^2 + fx^2)``, where ``fy`` and ``fx`` are in units of the Nyquist frequency of
their axis, so ``r = 1`` is the Nyquist frequency along an axis and ``r`` goes up to
``sqrt(2)`` in the corners. Radial bins are centred on multiples of ``2 / max(H, W)``, the
frequency step of the longer axis, so the first bin holds the DC term alone; bins that
contain no frequency are left out.

By default (``average=True``) the spectra, not the maps, are averaged over all leading axes
(for spike tensors ``[T, B, C, H, W]``: over T, B and C): averaging the maps first would
cancel every component that is not in phase across maps. Pass ``average=False`` for one
result per map, with the leading shape ``[...]`` kept; average the maps yourself first
(e.g. ``x.mean(0)`` for a firing-rate map) to analyse a mean map.
"""

import math

import numpy as np
import torch
from numpy.typing import ArrayLike

__all__ = ["delta_log_amplitude", "high_frequency_ratio", "is_binary", "radial_profile"]


CHUNK = 256  # maps transformed at a time when spectra are averaged


def is_binary(x: torch.Tensor) -> bool:
    """Whether every value of ``x`` (any shape) is 0 or 1: a spike tensor."""
    return bool(torch.logical_or(x == 0, x == 1).all())


def _check_maps(x: torch.Tensor | ArrayLike) -> torch.Tensor | np.ndarray:
    """``x`` as a tensor or array ``[..., H, W]`` of finite real numbers, not yet converted."""
    if not isinstance(x, torch.Tensor):
        x = np.asarray(x)
        if np.iscomplexobj(x) or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise ValueError(f"feature maps must be real numbers, got dtype {x.dtype}")
    elif x.is_complex():
        raise ValueError(f"feature maps must be real numbers, got dtype {x.dtype}")
    if x.ndim < 2 or x.shape[-2] < 2 or x.shape[-1] < 2:
        raise ValueError(
            f"feature maps must have shape [..., H, W] with H >= 2 and W >= 2, "
            f"got shape {tuple(x.shape)}"
        )
    finite = torch.isfinite(x) if isinstance(x, torch.Tensor) else np.isfinite(x)
    bad = int((~finite).sum())
    if bad:
        raise ValueError(f"feature maps must be finite, got {bad} nan or inf values")
    return x


def _float64(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to(device="cpu", dtype=torch.float64).numpy()
    return x.astype(np.float64, copy=False)


def _power(maps: np.ndarray) -> np.ndarray:
    """Power ``|F|^2 / (H W)^2`` of each map ``[..., H, W]``; it sums to the mean square."""
    h, w = maps.shape[-2:]
    return np.abs(np.fft.fft2(maps)) ** 2 / float(h * w) ** 2


def _spectra(x: torch.Tensor | ArrayLike, average: bool) -> tuple[np.ndarray, np.ndarray]:
    """Power and amplitude ``|F| / (H W)`` of the maps ``x [..., H, W]``.

    Both ``[..., H, W]``, or ``[H, W]`` means over all maps when ``average`` (computed
    ``CHUNK`` maps at a time, so large activations need little extra memory).
    """
    x = _check_maps(x)
    if not average:
        power = _power(_float64(x))
        return power, np.sqrt(power)
    maps = x.reshape(-1, *x.shape[-2:])
    power_sum, amplitude_sum = 0.0, 0.0
    for start in range(0, maps.shape[0], CHUNK):
        power = _power(_float64(maps[start : start + CHUNK]))
        power_sum = power_sum + power.sum(axis=0)
        amplitude_sum = amplitude_sum + np.sqrt(power).sum(axis=0)
    return power_sum / maps.shape[0], amplitude_sum / maps.shape[0]


def _radius(h: int, w: int) -> np.ndarray:
    """Normalised radius ``[H, W]`` of each FFT frequency (1.0 = Nyquist along an axis)."""
    fy = 2.0 * np.fft.fftfreq(h)
    fx = 2.0 * np.fft.fftfreq(w)
    return np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


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
    power, _ = _spectra(x, average)
    return _radial(power, "sum")


def _delta_log_amplitude(amplitude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    radii, amplitude = _radial(amplitude, "mean")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_amplitude = np.log(amplitude)
        return radii, log_amplitude - log_amplitude[..., :1]


def delta_log_amplitude(
    x: torch.Tensor | ArrayLike, average: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Relative log amplitude ``log A(r) - log A(0)`` of feature maps ``x [..., H, W]``.

    ``A(r)`` is the amplitude ``|F|`` averaged over the maps (when ``average``) and over the
    frequencies of each radial bin; the log is natural. This is the "delta log amplitude" of
    Park & Kim (ICLR 2022), who instead average the log amplitude over maps and read it
    along the diagonal of the shifted spectrum, from the centre to the corner; averaging
    before the log keeps silent spike maps (zero spectrum) from giving ``-inf``. Zero
    amplitudes follow IEEE arithmetic: ``-inf`` at radii without amplitude, ``+inf`` where
    only the DC amplitude is zero, ``nan`` where both are.

    Returns:
        ``(radii, delta)``: ``K`` bin centres and the relative log amplitude ``[K]`` (or
        ``[..., K]`` when ``average=False``); ``delta[..., 0]`` is 0.
    """
    _, amplitude = _spectra(x, average)
    return _delta_log_amplitude(amplitude)


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


def high_frequency_ratio(
    x: torch.Tensor | ArrayLike, cutoff: float = 0.5, average: bool = True
) -> float | np.ndarray:
    """Share of the non-DC power of feature maps ``x [..., H, W]`` at radius >= ``cutoff``.

    ``cutoff`` is a normalised radius in ``(0, sqrt(2)]``. Returns a float in ``[0, 1]`` for
    the power averaged over maps, or an array ``[...]`` when ``average=False``; ``nan`` for
    constant maps, which have no non-DC power.
    """
    _check_cutoff(cutoff)
    power, _ = _spectra(x, average)
    ratio = _high_frequency_ratio(power, cutoff)
    return float(ratio) if average else ratio
