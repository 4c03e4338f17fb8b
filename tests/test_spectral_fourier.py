"""Oracles of `spectral.fourier`: basis images, the heat map of an ideal blur and its low/high
means, band noise."""

import numpy as np
import pytest
import torch
from torch import nn

from spectral import (
    FourierHeatMap,
    band_mask,
    band_noise,
    band_noise_accuracy,
    centred_frequencies,
    fourier_basis,
    fourier_heat_map,
    gradient_spectrum,
    heat_map_radius,
)
from spectral.feature import _radius

CUT = 0.5


class BlurReadout(nn.Module):
    """An ideal low-pass (radius < CUT, an FFT mask) followed by a linear readout."""

    def __init__(self, size: int, classes: int) -> None:
        super().__init__()
        self.register_buffer("mask", band_mask(size, size, 0.0, CUT))
        self.readout = nn.Linear(size * size, classes, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blurred = torch.fft.ifft2(torch.fft.fft2(x) * self.mask).real
        return self.readout(blurred.flatten(1))


@pytest.mark.parametrize("h, w", [(8, 8), (7, 6)])
def test_each_basis_image_has_unit_norm_and_its_fft_peaks_at_its_frequency(h, w):
    for u in centred_frequencies(h):
        for v in centred_frequencies(w):
            basis = fourier_basis(h, w, int(u), int(v))
            assert float(basis.norm()) == pytest.approx(1.0)
            amplitude = torch.fft.fft2(basis).abs()
            peaks = set(zip(*np.nonzero(amplitude.numpy() > 1e-9 * amplitude.max().item()),
                            strict=True))
            assert peaks == {(u % h, v % w), (-u % h, -v % w)}


def test_heat_map_of_a_blur_is_zero_outside_its_pass_band_and_not_inside():
    torch.manual_seed(0)
    size = 8
    model = BlurReadout(size, 3)
    x = torch.rand(32, 1, size, size, dtype=torch.float64)
    y = torch.randint(0, 3, (32,))
    heat = fourier_heat_map(model, [(x[:16], y[:16]), (x[16:], y[16:])], eps=0.5)
    assert heat.images == 32 and list(heat.u) == list(range(-4, 4))
    radius = np.fft.fftshift(_radius(size, size))
    outside = radius >= CUT
    assert np.abs(heat.loss_increase[outside]).max() < 1e-10
    assert np.all(heat.error[outside] == heat.clean_error)
    assert np.abs(heat.loss_increase[~outside]).min() > 1e-4
    np.testing.assert_array_equal(heat.radius, radius)
    means = heat.band_means(CUT)  # the pass band is (0, CUT): nothing above it counts
    assert means["error_high"] == 0.0 and abs(means["loss_high"]) < 1e-10
    assert means["loss_low"] > 1e-4
    u, v, amplitude = gradient_spectrum(model, [(x, y)])
    assert amplitude[outside].max() < 1e-10 < amplitude[~outside].min()
    strided = fourier_heat_map(model, [(x, y)], eps=0.5, stride=2)
    assert list(strided.u) == [-4, -2, 0, 2]


def test_heat_map_radius_at_a_stride_is_the_radius_of_its_frequencies():
    u = centred_frequencies(8, 2)
    v = centred_frequencies(6, 2)
    np.testing.assert_allclose(heat_map_radius(8, 6, 2),
                               np.hypot(u[:, None] / 4, v[None, :] / 3), rtol=1e-15)


def test_band_means_of_a_synthetic_heat_map_equal_their_closed_form():
    # a 4x4 grid: radius |(u, v)| / 2 for u, v in -2..1; error and loss grow as radius^2
    radius = heat_map_radius(4, 4)
    u = v = np.arange(-2, 2)
    heat = FourierHeatMap(u, v, 0.1, 0.2 + radius ** 2, 3 * radius ** 2, 0.2, 1.0, 8, radius)
    means = heat.band_means(cutoff=0.6)
    # low (0 < r < 0.6): the four neighbours of DC at r = 1/2, r^2 = 1/4;
    # high: 4 at r^2 = 1/2, 2 at 1, 4 at 5/4, 1 at 2: mean (2 + 2 + 5 + 2) / 11 = 1
    assert means == pytest.approx({"error_low": 0.25, "loss_low": 0.75,
                                   "error_high": 1.0, "loss_high": 3.0}, abs=1e-12)
    assert np.isnan(heat.band_means(cutoff=2.0)["error_high"])


@pytest.mark.parametrize("low, high", [(0.0, 0.3), (0.3, 0.7), (0.7, 1.5)])
def test_band_noise_holds_its_power_in_its_band(low, high):
    noise = band_noise((4, 3, 16, 16), low, high, std=0.2,
                       generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert noise.flatten(1).pow(2).mean(1).sqrt().numpy() == pytest.approx([0.2] * 4)
    power = torch.fft.fft2(noise).abs().pow(2)
    inside = band_mask(16, 16, low, high)
    assert float(power[..., inside].sum() / power.sum()) == pytest.approx(1.0, abs=1e-12)


def test_band_noise_accuracy_of_a_blur_is_untouched_by_noise_above_its_band():
    torch.manual_seed(0)
    model = BlurReadout(8, 3)
    x = torch.rand(16, 1, 8, 8, dtype=torch.float64)
    y = model(x).argmax(-1)
    clean, accuracy = band_noise_accuracy(model, [(x, y)], [(0.0, CUT), (CUT, 1.5)],
                                          [0.5, 2.0])
    assert clean == 1.0
    assert np.all(accuracy[1] == 1.0) and accuracy[0, 1] < 1.0


def test_bad_eps_and_empty_bands_are_refused():
    with pytest.raises(ValueError, match="eps"):
        fourier_heat_map(BlurReadout(4, 2), [], eps=-1.0)
    with pytest.raises(ValueError, match="holds no frequency"):
        band_mask(4, 4, 0.1, 0.2)
