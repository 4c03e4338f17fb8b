"""Spatial spectra of feature maps."""

import math
import re

import numpy as np
import pytest
import torch
from scipy import ndimage

from spectral import (
    METHODS,
    SpectrumAccumulator,
    delta_log_amplitude,
    high_frequency_ratio,
    radial_profile,
)


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


@pytest.mark.parametrize("shape", [(0, 8, 8), (3, 0, 8, 8)])
def test_an_empty_batch_of_maps_is_rejected(shape):
    for fn in (radial_profile, delta_log_amplitude, high_frequency_ratio):
        for x in (np.zeros(shape), torch.zeros(shape)):
            with pytest.raises(ValueError, match=re.escape(f"at least one map, got shape {shape}")):
                fn(x)


def park_kim_curve(maps: np.ndarray) -> np.ndarray:
    """The issue's description of Park & Kim's curve, written out: the mean over maps of the
    log amplitude of the centred spectrum, at the half-diagonal bins (j, j), j < h / 2,
    relative to the centre (0, 0)."""
    h = maps.shape[-1]
    centred = np.fft.fftshift(np.fft.fft2(maps), axes=(-2, -1))
    log_amplitude = np.log(np.abs(centred) + 1e-6).mean(axis=0)
    c = h // 2
    return np.array([log_amplitude[c + j, c + j] - log_amplitude[c, c] for j in range(h - c)])


@pytest.mark.parametrize(("size", "cycles"), [(32, 5), (15, 3)])
def test_diagonal_method_is_park_and_kims_curve_on_square_maps(size, cycles):
    rng = np.random.default_rng(4)
    maps = grating(size, cycles, cycles) + 0.1 * rng.normal(size=(6, size, size))
    radii, delta = delta_log_amplitude(maps, method="diagonal")
    expected = park_kim_curve(maps)
    np.testing.assert_allclose(delta, expected, rtol=1e-12, atol=1e-12)
    assert np.argmax(delta) == cycles  # the grating sits on diagonal bin (cycles, cycles)
    assert radii[cycles] == pytest.approx(math.sqrt(2) * 2 * cycles / size)
    assert radii.size == (size + 1) // 2
    _, per_map = delta_log_amplitude(maps, average=False, method="diagonal")
    np.testing.assert_allclose(per_map.mean(0), delta, atol=1e-12)


def test_diagonal_method_misses_axis_aligned_content_and_radial_does_not():
    maps = 1.0 + grating(16, 0, 4)[None] + 0.01 * np.random.default_rng(5).normal(size=(4, 16, 16))
    radii, radial = delta_log_amplitude(maps)
    _, diagonal = delta_log_amplitude(maps, method="diagonal")
    assert radii[np.argmax(radial[1:]) + 1] == pytest.approx(0.5)  # 4 cycles of 8 = Nyquist / 2
    assert diagonal[1:].max() < radial[1:].max() - 2.0


def test_silent_maps_shrink_the_diagonal_curve_and_not_the_radial_one():
    active = 1.0 + np.random.default_rng(6).normal(size=(6, 16, 16))
    with_silent = np.concatenate([active, np.zeros((2, 16, 16))])  # a quarter silent
    for method, shrink in (("diagonal", 0.75), ("radial", 1.0)):
        _, alone = delta_log_amplitude(active, method=method)
        _, mixed = delta_log_amplitude(with_silent, method=method)
        np.testing.assert_allclose(mixed, shrink * alone, rtol=1e-9, atol=1e-12)


def test_summary_points_are_the_documented_frequencies():
    maps = np.random.default_rng(7).normal(size=(3, 32, 32))
    radial = SpectrumAccumulator()
    radial.add(maps)
    radii, delta = delta_log_amplitude(maps)
    result = radial.spectrum("radial")
    assert result.summary_radius == 1.0  # the Nyquist frequency along an axis
    assert result.summary_delta == pytest.approx(delta[list(radii).index(1.0)])
    diagonal = radial.spectrum("diagonal")
    assert diagonal.summary_radius == pytest.approx(math.sqrt(2) * (1 - 2 / 32))  # their 1.0 pi
    assert diagonal.summary_delta == pytest.approx(park_kim_curve(maps)[-1])
    odd = SpectrumAccumulator()
    odd.add(np.random.default_rng(8).normal(size=(2, 7, 7)))
    assert odd.spectrum().summary_radius == pytest.approx(6 / 7)  # the highest axis frequency


def test_accumulated_batches_equal_one_batch():
    x = torch.rand(5, 3, 8, 12, generator=torch.Generator().manual_seed(9))
    whole, parts = SpectrumAccumulator(), SpectrumAccumulator()
    whole.add(x)
    parts.add(x[:2])
    parts.add(x[2:].numpy())
    assert parts.maps == whole.maps == 15 and parts.size == (8, 12)
    for method in METHODS:
        a, b = whole.spectrum(method, cutoff=0.3), parts.spectrum(method, cutoff=0.3)
        assert a.high_frequency_ratio == pytest.approx(b.high_frequency_ratio)
        assert a.high_frequency_ratio == pytest.approx(high_frequency_ratio(x, cutoff=0.3))
        np.testing.assert_allclose(a.delta_log_amplitude, b.delta_log_amplitude)
        np.testing.assert_allclose(a.delta_log_amplitude, delta_log_amplitude(x, method=method)[1])
        np.testing.assert_allclose(a.power, radial_profile(x)[1])
    with pytest.raises(ValueError, match=r"size \(8, 8\) cannot join maps of size \(8, 12\)"):
        parts.add(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="no maps were added"):
        SpectrumAccumulator().spectrum()


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="unknown method 'corner'; valid: radial, diagonal"):
        delta_log_amplitude(np.zeros((4, 4)), method="corner")
