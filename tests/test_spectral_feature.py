"""Spatial spectra of feature maps."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from spectral import delta_log_amplitude, high_frequency_ratio, radial_profile


def grating(size: int, cycles_y: int, cycles_x: int) -> np.ndarray:
    y, x = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return np.cos(2 * math.pi * (cycles_y * y + cycles_x * x) / size)


@pytest.mark.parametrize("cycles", [(0, 4), (6, 0), (5, 5), (3, 12)])
def test_grating_peaks_at_its_own_radius(cycles):
    size = 32
    radii, power = radial_profile(grating(size, *cycles))
    expected = math.hypot(*cycles) / (size / 2)  # Nyquist is size / 2 cycles per map
    assert abs(radii[np.argmax(power)] - expected) <= 1.0 / size  # within half a bin
    assert power.max() == pytest.approx(0.5)  # a unit cosine has mean square 1/2


def test_radii_span_dc_to_the_corner():
    radii, power = radial_profile(np.ones((16, 16)))
    assert radii[0] == 0.0 and abs(radii[-1] - math.sqrt(2.0)) <= 1.0 / 16  # half a bin
    assert np.all(np.diff(radii) > 0)
    assert power[0] == pytest.approx(1.0) and np.allclose(power[1:], 0.0)


@pytest.mark.parametrize("shape", [(16, 16), (3, 12, 20), (2, 2, 3, 9, 7)])
def test_parseval(shape):
    x = np.random.default_rng(0).normal(size=shape)
    _, power = radial_profile(x)
    assert power.sum() == pytest.approx(np.mean(x**2))
    _, per_map = radial_profile(x, average=False)
    assert per_map.shape[:-1] == shape[:-2]
    np.testing.assert_allclose(per_map.sum(-1), np.mean(x**2, axis=(-2, -1)))


def test_average_over_many_maps_equals_mean_of_per_map_power():
    x = torch.rand(3, 250, 6, 8, generator=torch.Generator().manual_seed(3))  # 750 maps
    radii, power = radial_profile(x)
    radii_each, power_each = radial_profile(x, average=False)
    assert power_each.shape == (3, 250, radii.size)
    np.testing.assert_allclose(radii, radii_each)
    np.testing.assert_allclose(power, power_each.mean(axis=(0, 1)))
    high = high_frequency_ratio(x, cutoff=0.7, average=False)
    total = power_each[..., 1:].sum(-1)
    expected = (high * total).sum() / total.sum()  # a power-weighted mean of per-map ratios
    assert high_frequency_ratio(x, cutoff=0.7) == pytest.approx(expected)


def test_spectra_not_maps_are_averaged():
    """Two gratings of opposite sign cancel as maps, but their powers add."""
    g = grating(16, 0, 3)
    _, power = radial_profile(np.stack([g, -g]))
    assert power.max() == pytest.approx(0.5)


def test_torch_and_numpy_inputs_agree_and_spike_tensors_are_accepted():
    spikes = (torch.rand(4, 2, 3, 8, 8) < 0.3).float()
    for fn in (radial_profile, delta_log_amplitude):
        from_torch = fn(spikes)
        from_numpy = fn(spikes.numpy().astype(bool))
        for a, b in zip(from_torch, from_numpy, strict=True):
            np.testing.assert_allclose(a, b)
    assert high_frequency_ratio(spikes) == pytest.approx(high_frequency_ratio(spikes.numpy()))


def test_smooth_image_has_lower_high_frequency_ratio_than_white_noise():
    noise = np.random.default_rng(1).normal(size=(4, 64, 64))
    smooth = ndimage.gaussian_filter(noise, sigma=(0, 3, 3), mode="wrap")
    assert high_frequency_ratio(smooth) < 0.05
    # white noise spreads its power evenly: the ratio is the share of frequencies at r >= 0.5
    radius = np.hypot(*np.meshgrid(2 * np.fft.fftfreq(64), 2 * np.fft.fftfreq(64)))
    share = np.mean(radius[radius > 0] >= 0.5)
    assert high_frequency_ratio(noise) == pytest.approx(share, abs=0.02)


def test_high_frequency_ratio_per_map_and_cutoff():
    x = np.stack([grating(16, 0, 1), grating(16, 7, 7)])
    np.testing.assert_allclose(high_frequency_ratio(x, average=False), [0.0, 1.0], atol=1e-12)
    assert high_frequency_ratio(x) == pytest.approx(0.5)
    assert high_frequency_ratio(x, cutoff=math.sqrt(2.0)) == pytest.approx(0.0, abs=1e-12)
    assert high_frequency_ratio(x, cutoff=0.1) == pytest.approx(1.0)  # 1 cycle: r = 0.125
    assert math.isnan(high_frequency_ratio(np.ones((8, 8))))


def test_delta_log_amplitude_is_zero_at_dc_and_falls_for_smooth_maps():
    noise = np.random.default_rng(2).normal(size=(3, 32, 32)) + 1.0
    smooth = ndimage.gaussian_filter(noise, sigma=(0, 2, 2), mode="wrap")
    radii, d_noise = delta_log_amplitude(noise)
    _, d_smooth = delta_log_amplitude(smooth)
    assert d_noise[0] == 0.0 and d_smooth[0] == 0.0
    assert d_smooth[-1] < d_noise[-1] - 3.0
    _, per_map = delta_log_amplitude(smooth, average=False)
    assert per_map.shape == (3, radii.size)


def test_delta_log_amplitude_is_the_log_amplitude_ratio():
    """Doubling a grating adds log 2 at its radius; doubling the DC subtracts log 2."""
    g = grating(16, 0, 4)
    radii, delta = delta_log_amplitude(2.0 + g)
    k = np.argmin(abs(radii - 0.5))
    assert delta[k] > -10.0
    assert delta_log_amplitude(2.0 + 2.0 * g)[1][k] == pytest.approx(delta[k] + math.log(2.0))
    assert delta_log_amplitude(4.0 + g)[1][k] == pytest.approx(delta[k] - math.log(2.0))
    # the relative amplitude is scale-free
    assert delta_log_amplitude(3.0 * (2.0 + g))[1][k] == pytest.approx(delta[k])


@pytest.mark.parametrize("shape", [(16,), (1, 16), (16, 1), ()])
def test_maps_that_are_not_2d_are_rejected(shape):
    with pytest.raises(ValueError, match=r"\[\.\.\., H, W\].*got shape"):
        radial_profile(np.zeros(shape))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_maps_are_rejected(bad):
    x = torch.zeros(2, 8, 8)
    x[1, 3, 3] = bad
    for fn in (radial_profile, delta_log_amplitude, high_frequency_ratio):
        with pytest.raises(ValueError, match="finite, got 1 nan or inf"):
            fn(x)


def test_complex_maps_are_rejected():
    with pytest.raises(ValueError, match="real"):
        radial_profile(np.zeros((4, 4), dtype=complex))


@pytest.mark.parametrize("cutoff", [0.0, -0.5, 1.5, math.nan])
def test_cutoff_outside_range_is_rejected(cutoff):
    with pytest.raises(ValueError, match=r"\(0, sqrt\(2\)\]"):
        high_frequency_ratio(np.zeros((8, 8)), cutoff=cutoff)
