"""`bands`: controlled-frequency images whose classes differ only in one radial band.

Every image `[1, S, S]` is the sum of two parts of equal power (mean square 1/2 each):

- the *class signal*, all of its power in the band `low <= r <= high` of normalised radius
  `r` (1.0 = the Nyquist frequency along an axis, as in `spectral`): one grating per textured
  quadrant, each with its own random radius in the band, orientation and phase, under a smooth
  window over its quadrant, then projected onto the band with an exact FFT ring filter;
- *clutter*: isotropic Gaussian noise with flat power at `0 < r < low` (none when no
  frequency of the grid lies there), the same for every class.

Class `k` says which quadrants carry the band's texture: classes 0-3 one quadrant (top left,
top right, bottom left, bottom right), classes 4-9 one pair of quadrants (`QUADRANT_SETS`).
Where the band's power lies is the class; everything outside the band is class-free, so a
network can classify only by passing the band (the band's power per quadrant separates the
classes linearly). Images are generated at any side `S` (the band is in Nyquist units,
independent of `S`), each with zero mean and mean square 1; no augmentation applies (a crop,
resize or flip would move the band or change the class). ``models.app.data.BandsDataset``
serves them to training; this module needs numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import numpy as np

from models.app.datasets import DEFAULT_BAND

BANDS_SEED = 0  # the fixed images of the `bands` dataset
TRAIN_SIZE, TEST_SIZE = 5000, 1000
QUADRANT_SETS: tuple[tuple[int, ...], ...] = (
    *((q,) for q in range(4)),
    *combinations(range(4), 2),
)
"""Quadrants (0 top left, 1 top right, 2 bottom left, 3 bottom right) textured in class k."""
NUM_CLASSES = len(QUADRANT_SETS)
CHUNK = 500  # images generated at a time


def check_band(band: Sequence[float], size: int | None = None) -> tuple[float, float]:
    """`band` as `(low, high)`; raises ValueError unless `0 <= low < high <= sqrt(2)` and,
    with `size`, the image side `S` is even and >= 4 and some non-DC frequency of an `S x S`
    image lies in the band."""
    values = tuple(band) if isinstance(band, (list, tuple)) else ()
    if len(values) != 2 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        raise ValueError(f"band must be [low, high] (two numbers), got {band!r}")
    low, high = float(values[0]), float(values[1])
    if not 0.0 <= low < high <= math.sqrt(2.0):
        raise ValueError(
            f"band must satisfy 0 <= low < high <= sqrt(2) (normalised radius, 1.0 = Nyquist), "
            f"got [{low:g}, {high:g}]"
        )
    if size is not None and (size < 4 or size % 2):
        raise ValueError(f"bands images need an even side >= 4, got {size}")
    if size is not None and not _in_band(radius_grid(size), low, high).any():
        raise ValueError(f"band [{low:g}, {high:g}] holds no frequency of a {size}x{size} image")
    return low, high


def _in_band(radius: np.ndarray, low: float, high: float) -> np.ndarray:
    return (radius > 0) & (radius >= low) & (radius <= high)


def radius_grid(size: int) -> np.ndarray:
    """Normalised radius `[S, S]` of each FFT frequency of an `S x S` image (1.0 = Nyquist)."""
    f = 2.0 * np.fft.fftfreq(size)
    return np.hypot(f[:, None], f[None, :])


def _quadrant_windows(size: int) -> np.ndarray:
    """Smooth bumps `[4, S, S]`, each sin^2 over one quadrant and 0 elsewhere."""
    half = size // 2
    bump = np.zeros(size)
    bump[:half] = np.sin(math.pi * (np.arange(half) + 0.5) / half) ** 2
    parts = (bump, bump[::-1])  # top/left, bottom/right
    return np.stack([np.outer(parts[q // 2], parts[q % 2]) for q in range(4)])


def _unit_power(x: np.ndarray) -> np.ndarray:
    """Each map of `x [N, S, S]` scaled to mean square 1/2 (zero maps stay zero)."""
    power = (x**2).mean(axis=(-2, -1), keepdims=True)
    return x * np.sqrt(0.5 / np.where(power > 0, power, 1.0))


def generate_bands(
    count: int, band: Sequence[float] = DEFAULT_BAND, size: int = 32, seed: int = BANDS_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """`count` images `[N, S, S]` (float32) and labels `[N]` (int64, balanced, shuffled).

    Deterministic in `(count, band, size, seed)`. Raises ValueError for a band that holds no
    frequency of an `S x S` image.
    """
    low, high = check_band(band, size)
    radius = radius_grid(size)
    in_band = _in_band(radius, low, high)
    clutter_band = (radius > 0) & (radius < low)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % NUM_CLASSES)
    windows = _quadrant_windows(size)
    coords = np.arange(size, dtype=float)
    images = np.empty((count, size, size), dtype=np.float32)
    for start in range(0, count, CHUNK):
        stop = min(count, start + CHUNK)
        n = stop - start
        # one grating per quadrant: radius, orientation, phase  [n, 4]
        r = rng.uniform(low, high, size=(n, 4))
        angle = rng.uniform(0.0, math.pi, size=(n, 4))
        phase = rng.uniform(0.0, 2.0 * math.pi, size=(n, 4))
        fy, fx = (0.5 * r * np.sin(angle), 0.5 * r * np.cos(angle))  # cycles per pixel
        waves = np.cos(
            2.0 * math.pi * (fy[..., None, None] * coords[:, None] + fx[..., None, None] * coords)
            + phase[..., None, None]
        )  # [n, 4, S, S]
        textured = np.zeros((n, 4))
        for i, label in enumerate(labels[start:stop]):
            textured[i, list(QUADRANT_SETS[label])] = 1.0
        signal = np.einsum("nq,nqyx,qyx->nyx", textured, waves, windows)
        signal = np.fft.ifft2(np.fft.fft2(signal) * in_band).real
        noise = np.fft.fft2(rng.standard_normal((n, size, size))) * clutter_band
        clutter = np.fft.ifft2(noise).real
        images[start:stop] = _unit_power(signal) + _unit_power(clutter)
    return images, labels.astype(np.int64)
