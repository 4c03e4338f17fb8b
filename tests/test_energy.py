"""Energy measurement on hand-built networks: FLOPs, SOPs and MACs against closed-form counts."""

import pytest
import torch
from torch import nn

from models.energy import E_AC_PJ, E_MAC_PJ, EnergyMeter, measure_energy, stage_of
from models.neurons import MultiStepLIF

T, B = 4, 2


def lif() -> MultiStepLIF:
    return MultiStepLIF(backend="torch")


def by_name(report):
    return {layer.name: layer for layer in report.layers}


def spikes(*shape: int, p: float = 0.3) -> torch.Tensor:
    return (torch.rand(*shape) < p).float()


class Heaviside(nn.Module):
    """A spike generator that is not one of our neurons."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > 0).float()


class SpikeAttention(nn.Module):
    """`q @ (k^T @ v)` of spike maps `[T, B, 3, h, N, d]` (q, k, v stacked on axis 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = x.unbind(2)
        return q @ (k.transpose(-2, -1) @ v)


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, 5), lif(), nn.Linear(5, 3))


def test_linear_flops_and_all_ones_spikes_give_T_times_flops():
    torch.manual_seed(0)
    report = measure_energy(mlp(), torch.ones(T, B, 6), T=T, time_major=True)
    first = by_name(report)["0"]
    assert first.flops == 6 * 5
    assert first.counted_as == "AC" and first.input_rate == 1.0
    assert first.sops == T * 6 * 5 and first.macs == 0
    assert first.energy_mj == pytest.approx(E_AC_PJ * T * 30 * 1e-9)
    assert by_name(report)["2"].flops == 5 * 3
    assert report.images == B and report.T == T


def test_all_zero_spikes_give_no_sops():
    report = measure_energy(mlp(), torch.zeros(T, B, 6), T=T, time_major=True)
    first = by_name(report)["0"]
    assert first.counted_as == "AC" and first.input_rate == 0.0
    assert first.sops == 0 and first.energy_mj == 0


def test_rate_of_hidden_spikes_gates_the_second_layer():
    torch.manual_seed(1)
    net = mlp()
    nn.init.uniform_(net[0].weight, 0.0, 1.0)
    x = spikes(T, B, 6, p=0.5)
    with torch.no_grad():
        hidden = net[1](net[0](x))
    rate = hidden.mean().item()
    assert 0 < rate < 1
    report = measure_energy(net, x, T=T, time_major=True)
    second = by_name(report)["2"]
    assert second.input_rate == pytest.approx(rate)
    assert second.sops == pytest.approx(rate * T * 15)
    assert report.neurons[0].name == "1" and report.neurons[0].rate == pytest.approx(rate)


def test_spikes_are_told_from_values_not_from_neuron_classes():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(6, 5), Heaviside(), nn.Linear(5, 3))
    x = torch.randn(T, B, 6)
    with torch.no_grad():
        rate = net[1](net[0](x)).mean().item()
    layers = by_name(measure_energy(net, x, T=T, time_major=True))
    assert layers["0"].counted_as == "MAC" and layers["0"].input_rate is None
    assert layers["2"].counted_as == "AC" and layers["2"].sops == pytest.approx(rate * T * 15)


def test_conv_flops_follow_the_closed_form():
    net = nn.Sequential(
        nn.Flatten(0, 1),
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.Conv2d(8, 12, 5, groups=4),
        nn.Flatten(2),
        nn.Conv1d(12, 6, 1),
    )
    layers = by_name(measure_energy(net, torch.ones(T, B, 3, 16, 16), T=T, time_major=True))
    assert list(layers) == ["1", "3", "5"]  # BatchNorm is not counted
    assert layers["1"].flops == 8 * 8 * 8 * 3 * 3 * 3
    assert layers["3"].flops == 4 * 4 * 12 * (8 // 4) * 5 * 5
    assert layers["5"].flops == 16 * 6 * 12
    assert layers["1"].sops == T * layers["1"].flops


def pixel_net() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(0, 1), nn.Conv2d(3, 8, 3, padding=1, bias=False))


def test_layer_on_pixels_counts_as_mac_static_image_once():
    torch.manual_seed(3)
    image = torch.randn(1, B, 3, 8, 8)
    flops = 8 * 8 * 8 * 3 * 9
    static = by_name(measure_energy(pixel_net(), image.repeat(T, 1, 1, 1, 1), T=T,
                                    time_major=True))["1"]
    assert static.counted_as == "MAC" and static.input_rate is None and static.sops == 0
    assert static.flops == flops and static.macs == flops
    assert static.energy_mj == pytest.approx(E_MAC_PJ * flops * 1e-9)
    frames = by_name(measure_energy(pixel_net(), torch.randn(T, B, 3, 8, 8), T=T,
                                    time_major=True))["1"]
    assert frames.macs == T * flops


def test_spike_matrix_products_are_gated_by_the_left_spike_operand():
    torch.manual_seed(4)
    heads, tokens, d = 2, 10, 4
    x = spikes(T, B, 3, heads, tokens, d)
    q, k = x[:, :, 0], x[:, :, 1]
    report = measure_energy(SpikeAttention(), x, T=T, time_major=True)
    kv, qkv = report.layers
    assert (kv.name, qkv.name) == ("matmul0", "matmul1")
    assert kv.kind == qkv.kind == "matmul"
    assert kv.flops == qkv.flops == heads * d * tokens * d
    assert kv.input_rate == pytest.approx(k.mean().item())
    assert qkv.input_rate == pytest.approx(q.mean().item())
    assert qkv.sops == pytest.approx(q.mean().item() * T * heads * tokens * d * d)


def test_meter_sums_batches_and_restores_the_mode():
    torch.manual_seed(5)
    net = mlp().train()
    with EnergyMeter(net, T=T, time_major=True) as meter:
        assert not net.training and not torch.is_grad_enabled()
        net(torch.ones(T, 3, 6))
        net(torch.zeros(T, 1, 6))
    assert net.training and torch.is_grad_enabled()
    report = meter.report()
    assert report.images == 4
    assert by_name(report)["0"].sops == pytest.approx(3 / 4 * T * 30)


def test_missing_T_is_a_clear_error():
    with pytest.raises(ValueError, match="pass T"):
        measure_energy(mlp(), torch.ones(T, B, 6))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("patch_embed2.max_embed1.embed_conv", ("stage 2", "patch embedding")),
        ("stage3.4.attn.matmul1", ("stage 3", "token mixer")),
        ("stage1.0.mixer.conv5", ("stage 1", "token mixer")),
        ("stage2.1.mlp.fc2_conv", ("stage 2", "MLP")),
        ("head", ("classifier", "classifier")),
        ("head_lif", ("classifier", "classifier")),
        ("layer3.0.downsample.1", ("stage 3", "blocks")),
        ("headless", ("other", "other")),
    ],
)
def test_stage_and_part_come_from_the_module_name(name, expected):
    assert stage_of(name) == expected
