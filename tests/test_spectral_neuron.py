"""Neuron frequency responses: closed form against textbook formulas and against simulation."""

import math

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import neuron as sj_neuron

from spectral import (
    cascade_transfer,
    estimate_transfer_welch,
    lif_cutoff,
    measure_neuron_response,
    neuron_transfer,
)

TAUS = [1.5, 2.0, 4.0, 8.0]


def lif_membrane(tau: float, decay_input: bool = True):
    """Sub-threshold LIF: spikingjelly's node with an unreachable threshold, returning v."""

    def run(x: torch.Tensor) -> torch.Tensor:
        node = sj_neuron.LIFNode(
            tau=tau, decay_input=decay_input, v_threshold=1e9, step_mode="m", store_v_seq=True
        )
        node(x)
        return node.v_seq

    return run


def if_membrane(x: torch.Tensor) -> torch.Tensor:
    node = sj_neuron.IFNode(v_threshold=1e9, step_mode="m", store_v_seq=True)
    node(x)
    return node.v_seq


def spiking(node_class, **kwargs):
    def run(x: torch.Tensor) -> torch.Tensor:
        return node_class(step_mode="m", **kwargs)(x)

    return run


@pytest.mark.parametrize("tau", TAUS)
def test_lif_dc_gain_is_one_and_gain_at_pi_is_one_over_2tau_minus_1(tau):
    h = neuron_transfer(np.array([0.0, math.pi]), tau)
    assert h[0] == pytest.approx(1.0)
    assert abs(h[1]) == pytest.approx(1.0 / (2.0 * tau - 1.0))


@pytest.mark.parametrize("tau", TAUS)
def test_lif_without_input_decay_is_tau_times_larger(tau):
    omega = np.linspace(0.0, math.pi, 9)
    np.testing.assert_allclose(
        neuron_transfer(omega, tau, decay_input=False), tau * neuron_transfer(omega, tau)
    )
    assert abs(neuron_transfer(0.0, tau, decay_input=False)) == pytest.approx(tau)


@pytest.mark.parametrize("tau", TAUS)
def test_gain_at_cutoff_is_minus_3_db(tau):
    cutoff = lif_cutoff(tau)
    assert 0.0 < cutoff < math.pi
    assert abs(neuron_transfer(cutoff, tau)) == pytest.approx(1.0 / math.sqrt(2.0))
    # the gain falls monotonically, so it is above -3 dB before the cut-off and below after
    assert abs(neuron_transfer(0.9 * cutoff, tau)) > 1.0 / math.sqrt(2.0)
    assert abs(neuron_transfer(min(1.1 * cutoff, math.pi), tau)) < 1.0 / math.sqrt(2.0)


def test_cutoff_is_inf_where_the_gain_never_falls_3_db():
    tau_edge = (1.0 + math.sqrt(2.0)) / 2.0  # gain at pi 1/(2 tau - 1) = 1/sqrt(2)
    assert lif_cutoff(1.0) == math.inf
    assert lif_cutoff(tau_edge - 1e-3) == math.inf
    assert abs(neuron_transfer(math.pi, tau_edge - 1e-3)) > 1.0 / math.sqrt(2.0)
    assert math.pi - 0.2 < lif_cutoff(tau_edge + 1e-3) < math.pi


def test_cutoff_accepts_arrays_and_falls_with_tau():
    taus = np.array(TAUS)
    cutoffs = lif_cutoff(taus)
    assert cutoffs.shape == taus.shape
    np.testing.assert_allclose(cutoffs, [lif_cutoff(t) for t in TAUS])
    assert np.all(np.diff(cutoffs) < 0)


def test_if_is_the_integrator():
    omega = np.linspace(0.05, math.pi, 20)
    np.testing.assert_allclose(abs(neuron_transfer(omega, tau=None)), 1 / (2 * np.sin(omega / 2)))
    assert abs(neuron_transfer(0.0, tau=None)) == math.inf


@pytest.mark.parametrize("tau", [None, 2.0])
def test_cascade_is_the_power(tau):
    omega = np.linspace(0.1, math.pi, 7)
    for layers in (1, 2, 5):
        np.testing.assert_allclose(
            cascade_transfer(omega, layers, tau), neuron_transfer(omega, tau) ** layers
        )


@pytest.mark.parametrize("tau", TAUS)
def test_simulated_subthreshold_lif_matches_closed_form(tau):
    omegas = np.linspace(0.04, 0.96, 12) * math.pi
    measured = measure_neuron_response(lif_membrane(tau), omegas, steps=256, neurons=4)
    expected = neuron_transfer(omegas, tau)
    np.testing.assert_allclose(np.abs(measured), np.abs(expected), rtol=0.01)
    np.testing.assert_allclose(np.angle(measured), np.angle(expected), atol=0.01)


def test_simulated_subthreshold_lif_without_input_decay_and_if():
    omegas = np.linspace(0.04, 0.96, 10) * math.pi
    measured = measure_neuron_response(lif_membrane(4.0, decay_input=False), omegas, steps=256)
    np.testing.assert_allclose(measured, neuron_transfer(omegas, 4.0, decay_input=False), rtol=0.01)
    measured = measure_neuron_response(if_membrane, omegas, steps=256)
    np.testing.assert_allclose(measured, neuron_transfer(omegas, None), rtol=0.01)


def test_relu_above_its_kink_has_unit_gain():
    omegas = np.array([0.1, 1.0, 3.0])
    measured = measure_neuron_response(torch.relu, omegas, bias=1.0, amplitude=0.5)
    np.testing.assert_allclose(measured, 1.0, rtol=1e-6)


def test_welch_estimate_matches_closed_form():
    omegas, h = estimate_transfer_welch(lif_membrane(2.0), steps=2048, neurons=16, nperseg=128)
    assert omegas[0] == 0.0 and omegas[-1] == pytest.approx(math.pi)
    assert omegas.shape == h.shape == (65,)
    np.testing.assert_allclose(h[1:], neuron_transfer(omegas[1:], 2.0), rtol=0.03)


def test_spiking_lif_keeps_more_high_frequency_gain_than_if():
    """Spike output: gain at 0.8 pi relative to gain at 0.05 pi, LIF (tau 2) against IF."""
    omegas = np.array([0.05, 0.8]) * math.pi
    drive = dict(amplitude=0.1, noise=0.2, steps=1024, neurons=32)
    lif = spiking(sj_neuron.LIFNode, tau=2.0)
    integrate = spiking(sj_neuron.IFNode)
    # operating points with the same firing rate, about 0.3 spikes per step
    lif_rate = lif(torch.full((512, 64), 1.2) + 0.2 * torch.randn(512, 64)).mean()
    if_rate = integrate(torch.full((512, 64), 0.4) + 0.2 * torch.randn(512, 64)).mean()
    assert 0.2 < lif_rate < 0.4 and 0.2 < if_rate < 0.4
    g_lif = np.abs(measure_neuron_response(lif, omegas, bias=1.2, **drive))
    g_if = np.abs(measure_neuron_response(integrate, omegas, bias=0.4, **drive))
    assert np.all(g_lif > 0.1) and np.all(g_if > 0.1)  # both respond: spikes are firing
    assert g_lif[1] / g_lif[0] > 1.2 * (g_if[1] / g_if[0])


def test_neuron_output_of_another_shape_is_rejected():
    with pytest.raises(ValueError, match=r"\[T, N\].*\(1280, 64\).*\(1280, 1\)"):
        measure_neuron_response(lambda x: x.sum(-1, keepdim=True), [1.0])
    with pytest.raises(TypeError, match="ndarray"):
        measure_neuron_response(lambda x: x.numpy(), [1.0])


def test_non_finite_neuron_output_is_rejected():
    with pytest.raises(ValueError, match="finite values, got 1280 nan or inf"):
        measure_neuron_response(lambda x: x.log(), [1.0], bias=-1.0, neurons=1)


@pytest.mark.parametrize(
    ("option", "value"), [("steps", 3), ("neurons", 0), ("warmup", -1), ("steps", 10.0)]
)
def test_bad_drive_sizes_are_rejected(option, value):
    with pytest.raises(ValueError, match=f"{option} must be an integer >= .*got {value}"):
        measure_neuron_response(torch.relu, [1.0], **{option: value})


@pytest.mark.parametrize("omega", [0.0, math.pi, -1.0, 4.0])
def test_drive_frequency_outside_open_interval_is_rejected(omega):
    with pytest.raises(ValueError, match=r"\(0, pi\)"):
        measure_neuron_response(torch.relu, [1.0, omega])


@pytest.mark.parametrize("tau", [0.5, -2.0, math.nan])
def test_bad_tau_is_rejected(tau):
    with pytest.raises(ValueError, match="tau"):
        neuron_transfer(1.0, tau)
    with pytest.raises(ValueError, match="tau"):
        lif_cutoff(tau)


@pytest.mark.parametrize("layers", [0, 1.5, True])
def test_bad_layer_count_is_rejected(layers):
    with pytest.raises(ValueError, match="layers"):
        cascade_transfer(1.0, layers)


def lif_spikes(x: torch.Tensor) -> torch.Tensor:
    """A LIF neuron (tau 2, threshold 1, hard reset) written out: spikes [T, N]."""
    v, spikes = torch.zeros_like(x[0]), []
    for step in x:
        v = v + (step - v) / 2.0
        spike = (v >= 1.0).to(x.dtype)
        v = v * (1.0 - spike)
        spikes.append(spike)
    return torch.stack(spikes)


@pytest.mark.parametrize("bias", [math.nan, math.inf, -math.inf])
def test_non_finite_bias_is_rejected(bias):
    """A nan drive never reaches the threshold: the LIF would answer 0 instead of failing."""
    with pytest.raises(ValueError, match=f"bias must be a finite number, got {bias}"):
        measure_neuron_response(lif_spikes, [1.0], bias=bias, neurons=4, steps=16, warmup=0)
    with pytest.raises(ValueError, match=f"bias must be a finite number, got {bias}"):
        estimate_transfer_welch(lif_spikes, bias=bias, neurons=4, steps=16, nperseg=8)


@pytest.mark.parametrize(
    ("option", "value", "rule"),
    [("amplitude", math.inf, " > 0"), ("amplitude", 0.0, " > 0"), ("noise", math.nan, " >= 0"),
     ("noise", -0.1, " >= 0"), ("bias", "1", "")],
)
def test_bad_drive_levels_are_rejected(option, value, rule):
    with pytest.raises(ValueError, match=f"{option} must be a finite number{rule}, got"):
        measure_neuron_response(lif_spikes, [1.0], neurons=4, steps=16, **{option: value})


@pytest.mark.parametrize("std", [math.inf, 0.0, math.nan])
def test_bad_noise_std_is_rejected(std):
    with pytest.raises(ValueError, match="std must be a finite number > 0"):
        estimate_transfer_welch(lif_spikes, std=std, neurons=4, steps=16, nperseg=8)
