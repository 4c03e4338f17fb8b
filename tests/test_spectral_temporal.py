"""Oracles of `spectral.temporal`: a linear time-invariant stand-in of LIF layers, pure noise."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from spectral import predicted_gain_db, spike_train_spectrum, temporal_transfer

TAU = 2.0
OMEGAS = np.linspace(math.pi / 16, math.pi, 8)


class Membrane(nn.Module):
    """Sub-threshold LIF membrane over time-major input: ``H[t] = beta H[t-1] + X[t] / tau``."""

    def __init__(self, tau: float) -> None:
        super().__init__()
        self.tau = tau

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta, h, out = 1.0 - 1.0 / self.tau, torch.zeros_like(x[0]), []
        for step in x:
            h = beta * h + step / self.tau
            out.append(h)
        return torch.stack(out)


class Cascade(nn.Module):
    """Clips ``[B, T, C, H, W]`` -> time-major, then ``layers`` membranes and a 1x1 mix."""

    def __init__(self, layers: int) -> None:
        super().__init__()
        self.membranes = nn.ModuleList(Membrane(TAU) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(0, 1)
        for membrane in self.membranes:
            x = -2.0 * membrane(x) + 0.3
        return x


class Noise(nn.Module):
    """Output independent of the input: white noise ``[T, ...]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.transpose(0, 1).shape, dtype=x.dtype)


def test_lif_membrane_cascade_matches_closed_form_within_a_tenth_of_a_db():
    torch.manual_seed(0)
    images = torch.rand(3, 2, 4, 4, dtype=torch.float64)
    omegas, layers, _ = temporal_transfer(Cascade(3), images, OMEGAS, eps=0.05, steps=96,
                                          warmup=48, types=Membrane, neuron_types=Membrane)
    assert [layer.neurons for layer in layers] == [1, 2, 3]
    for layer in layers:
        expected = predicted_gain_db(omegas, layer.neurons, TAU)
        np.testing.assert_allclose(layer.gain_db, expected, atol=0.1)
        # 1/tau DC gain per layer, times the -2 of the mix before it
        assert layer.slope == pytest.approx(2.0 ** (layer.neurons - 1), rel=1e-3)
        assert np.all(layer.floor < 1e-6 * layer.gain)
        # at pi each membrane passes 1 / (2 tau - 1)
        assert layer.gain[-1] == pytest.approx(
            2.0 ** (layer.neurons - 1) / (2 * TAU - 1) ** layer.neurons, rel=1e-3)


def test_pure_noise_reads_at_the_floor():
    torch.manual_seed(1)
    images = torch.rand(8, 2, 4, 4)
    _, (layer,), _ = temporal_transfer(Noise(), images, OMEGAS, eps=0.1, steps=64, warmup=0,
                                       types=Noise)
    ratio = layer.gain / layer.floor
    assert np.all((ratio > 0.8) & (ratio < 1.25)), ratio


def test_bad_omega_eps_and_layer_names_are_refused():
    model, images = Cascade(1), torch.rand(1, 1, 2, 2)
    for omega in (0.0, -1.0, 3.2):
        with pytest.raises(ValueError, match="outside"):
            temporal_transfer(model, images, [omega], types=Membrane)
    with pytest.raises(ValueError, match="eps"):
        temporal_transfer(model, images, [1.0], eps=0.0, types=Membrane)
    with pytest.raises(ValueError, match="no module"):
        temporal_transfer(model, images, [1.0], names="nothing*")


def test_spike_train_spectrum_of_a_period_four_train_peaks_at_half_pi():
    train = torch.zeros(64, 3)
    train[::4] = 1.0
    omegas, power = spike_train_spectrum(train)
    assert omegas[np.argmax(power)] == pytest.approx(math.pi / 2)
    assert omegas[-1] == pytest.approx(math.pi)
