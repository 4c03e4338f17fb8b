"""What a classifier's decisions lose to spatial frequencies: Fourier heat maps, band noise.

- `fourier_heat_map` (Yin et al., NeurIPS 2019): the error rate and the loss increase of a
  classifier when each 2-D Fourier basis image ``(u, v)`` of the input grid is added to its
  images, at a norm relative to each image's; `gradient_spectrum` is the cheap view beside it,
  the mean FFT amplitude of ``d loss / d input``.
- `band_noise_accuracy` (Park & Kim, ICLR 2022): accuracy under Gaussian noise restricted to
  radial frequency bands, at several noise levels.

Frequencies ``(u, v)`` are integers, cycles per image along H and W, in the centred layout of
``numpy.fft.fftshift`` (``u`` from ``-(H // 2)`` to ``(H - 1) // 2``). Radii are normalised as
in `spectral.feature` (1.0 is the Nyquist frequency along an axis). Batches are iterables of
``(images [B, C, H, W], labels [B])``; the model maps images to logits ``[B, K]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .feature import _radius

__all__ = [
    "FourierHeatMap",
    "band_mask",
    "band_noise",
    "band_noise_accuracy",
    "centred_frequencies",
    "fourier_basis",
    "fourier_heat_map",
    "gradient_spectrum",
    "heat_map_radius",
]

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def centred_frequencies(n: int, stride: int = 1) -> np.ndarray:
    """Integer frequencies of an ``n``-point axis in centred order, every ``stride``-th around
    0 (0 always included)."""
    if stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    full = np.fft.fftshift(np.fft.fftfreq(n, 1.0 / n)).astype(int)
    return full[full % stride == 0]


def fourier_basis(h: int, w: int, u: int, v: int) -> torch.Tensor:
    """The real unit-norm Fourier basis image ``[h, w]`` (float64) of frequency ``(u, v)``:
    the inverse FFT of a spectrum that is 1 at ``(u, v)`` and at ``(-u, -v)`` and 0 elsewhere,
    scaled to norm 1."""
    spectrum = torch.zeros(h, w, dtype=torch.complex128)
    spectrum[u % h, v % w] = 1.0
    spectrum[-u % h, -v % w] = 1.0
    image = torch.fft.ifft2(spectrum).real
    return image / image.norm()


def heat_map_radius(h: int, w: int, stride: int = 1) -> np.ndarray:
    """Normalised radius (1.0 = Nyquist along an axis) of each frequency ``(u, v)`` of an
    ``h x w`` heat map at ``stride``, ``[len(u), len(v)]`` in the centred layout."""
    keep_u = np.isin(centred_frequencies(h), centred_frequencies(h, stride))
    keep_v = np.isin(centred_frequencies(w), centred_frequencies(w, stride))
    return np.fft.fftshift(_radius(h, w))[np.ix_(keep_u, keep_v)]


@dataclass(frozen=True, eq=False)
class FourierHeatMap:
    """Yin et al.'s heat maps ``[len(u), len(v)]`` in the centred layout: ``error`` the error
    rate and ``loss_increase`` the mean cross-entropy minus the clean one when basis ``(u, v)``
    is added at norm ``eps`` times each image's norm, with a random sign per image;
    ``radius`` the normalised radius of each ``(u, v)`` (`heat_map_radius`)."""

    u: np.ndarray
    v: np.ndarray
    eps: float
    error: np.ndarray
    loss_increase: np.ndarray
    clean_error: float
    clean_loss: float
    images: int
    radius: np.ndarray

    def band_means(self, cutoff: float = 0.5) -> dict[str, float]:
        """Mean error increase (over the clean error) and loss increase over the frequencies
        of radius in ``(0, cutoff)`` (``*_low``; the DC basis is left out) and ``>= cutoff``
        (``*_high``): ``{"error_low", "error_high", "loss_low", "loss_high"}``, nan for a
        side without frequencies."""
        sides = {"low": (self.radius > 0) & (self.radius < cutoff),
                 "high": self.radius >= cutoff}
        means = {}
        for side, mask in sides.items():
            means[f"error_{side}"] = (float((self.error[mask] - self.clean_error).mean())
                                      if mask.any() else math.nan)
            means[f"loss_{side}"] = (float(self.loss_increase[mask].mean())
                                     if mask.any() else math.nan)
        return means


def _check_eps(eps: float) -> None:
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")


def _key(u: int, v: int, h: int, w: int) -> tuple[int, int]:
    """One FFT index for ``(u, v)`` and ``(-u, -v)``, which share a basis image."""
    return min((u % h, v % w), (-u % h, -v % w))


def _loss_and_errors(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
    logits = model(x)
    return (float(F.cross_entropy(logits, y, reduction="sum")),
            int((logits.argmax(-1) != y).sum()))


def fourier_heat_map(
    model: nn.Module,
    batches: Batches,
    eps: float = 0.1,
    stride: int = 1,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    before: Callable[[], None] | None = None,
) -> FourierHeatMap:
    """Error rate and loss increase of ``model`` under each Fourier basis perturbation.

    Each image ``x [C, H, W]`` gets ``s eps ||x|| U_(u,v) / sqrt(C)`` on every channel (norm
    ``eps ||x||`` over the image), ``s = +-1`` drawn per image and frequency. ``(u, v)`` and
    ``(-u, -v)`` have the same basis image and share one measurement; ``stride`` keeps every
    ``stride``-th frequency along each axis. ``progress`` is called with the images of each
    forward pass; ``before`` before each forward pass (to reset a stateful network).
    """
    _check_eps(eps)
    generator = torch.Generator().manual_seed(seed)
    sums: dict[tuple[int, int], list[float]] = {}
    clean, count = [0.0, 0.0], 0
    u = v = None
    h = w = 0
    with torch.no_grad():
        for x, y in batches:
            h, w = x.shape[-2:]
            if u is None:
                u, v = centred_frequencies(h, stride), centred_frequencies(w, stride)
            scale = eps * x.flatten(1).norm(dim=1) / math.sqrt(x.shape[1])  # [B]
            if before is not None:
                before()
            loss, errors = _loss_and_errors(model, x, y)
            clean[0] += loss
            clean[1] += errors
            count += len(x)
            done = set()
            for fu in u:
                for fv in v:
                    key = _key(int(fu), int(fv), h, w)
                    if key in done:
                        continue
                    done.add(key)
                    sign = torch.randint(0, 2, (len(x),), generator=generator) * 2.0 - 1.0
                    basis = fourier_basis(h, w, int(fu), int(fv)).to(x.dtype)
                    delta = (sign.to(x.dtype) * scale)[:, None, None, None] * basis
                    if before is not None:
                        before()
                    loss, errors = _loss_and_errors(model, x + delta.to(x.device), y)
                    entry = sums.setdefault(key, [0.0, 0.0])
                    entry[0] += loss
                    entry[1] += errors
                    if progress is not None:
                        progress(len(x))
    if count == 0:
        raise ValueError("no images in the batches")
    error = np.empty((len(u), len(v)))
    loss = np.empty((len(u), len(v)))
    for i, fu in enumerate(u):
        for j, fv in enumerate(v):
            entry = sums[_key(int(fu), int(fv), h, w)]
            error[i, j] = entry[1] / count
            loss[i, j] = entry[0] / count - clean[0] / count
    return FourierHeatMap(u, v, float(eps), error, loss, clean[1] / count, clean[0] / count,
                          count, heat_map_radius(h, w, stride))


def gradient_spectrum(
    model: nn.Module, batches: Batches, before: Callable[[], None] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean FFT amplitude of ``d loss / d input`` over images and channels (cross-entropy).

    Returns ``(u, v, amplitude [H, W])`` in the centred layout."""
    total, count = None, 0
    for x, y in batches:
        x = x.detach().clone().requires_grad_(True)
        if before is not None:
            before()
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        amplitude = torch.fft.fft2(grad.double()).abs().mean(1).sum(0)
        total = amplitude if total is None else total + amplitude
        count += len(x)
    if total is None:
        raise ValueError("no images in the batches")
    h, w = total.shape
    return (centred_frequencies(h), centred_frequencies(w),
            np.fft.fftshift((total / count).cpu().numpy()))


def band_mask(h: int, w: int, low: float, high: float) -> torch.Tensor:
    """Boolean ``[h, w]`` of the FFT frequencies with normalised radius in ``[low, high)``
    (``high`` above sqrt(2) takes the corners)."""
    if not 0.0 <= low < high:
        raise ValueError(f"a band needs 0 <= low < high, got [{low!r}, {high!r})")
    radius = _radius(h, w)
    mask = (radius >= low) & (radius < high)
    if not mask.any():
        raise ValueError(f"the band [{low}, {high}) holds no frequency of a {h}x{w} grid")
    return torch.as_tensor(mask)


def band_noise(
    shape: Sequence[int], low: float, high: float, std: float,
    generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Gaussian noise ``shape = [B, ..., H, W]`` restricted to radii ``[low, high)``.

    White Gaussian noise, FFT over the last two axes, every frequency outside the band zeroed,
    back; then each sample ``[..., H, W]`` is scaled to root mean square ``std``."""
    if not (math.isfinite(std) and std >= 0):
        raise ValueError(f"std must be a finite number >= 0, got {std!r}")
    mask = band_mask(shape[-2], shape[-1], low, high)
    noise = torch.randn(*shape, generator=generator, dtype=torch.float64)
    noise = torch.fft.ifft2(torch.fft.fft2(noise) * mask).real
    rms = noise.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-300)
    noise = noise * (std / rms).reshape(-1, *([1] * (noise.ndim - 1)))
    return noise.to(dtype)


def band_noise_accuracy(
    model: nn.Module,
    batches: Batches,
    bands: Sequence[tuple[float, float]],
    levels: Sequence[float],
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    before: Callable[[], None] | None = None,
) -> tuple[float, np.ndarray]:
    """Accuracy of ``model`` under `band_noise` in each band at each level (noise RMS in the
    images' units). Returns ``(clean accuracy, accuracy [len(bands), len(levels)])``."""
    generator = torch.Generator().manual_seed(seed)
    correct = np.zeros((len(bands), len(levels)))
    clean, count = 0, 0
    with torch.no_grad():
        for x, y in batches:
            if before is not None:
                before()
            clean += int((model(x).argmax(-1) == y).sum())
            count += len(x)
            for i, (low, high) in enumerate(bands):
                for j, level in enumerate(levels):
                    noise = band_noise(x.shape, low, high, level, generator, x.dtype)
                    if before is not None:
                        before()
                    correct[i, j] += int((model(x + noise.to(x.device)).argmax(-1) == y).sum())
                    if progress is not None:
                        progress(len(x))
    if count == 0:
        raise ValueError("no images in the batches")
    return clean / count, correct / count
