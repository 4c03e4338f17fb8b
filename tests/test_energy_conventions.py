"""Energy conventions by name: closed-form counts of each rule, and the worked examples of the
papers' presets (Spikformer, the Spike-driven Transformer)."""

import pytest
import timm
import torch
from torch import nn

import models.zoo  # noqa: F401  (registers the zoo with timm)
from models.energy import CONVENTIONS, E_AC_PJ, E_MAC_PJ, get_convention, measure_energy
from models.energy.conventions import RULE_TOPICS
from models.neurons import MultiStepLIF

T, B = 4, 2


def by_name(report) -> dict:
    return {layer.name: layer for layer in report.layers}


def totals(report, name: str) -> tuple[float, float]:
    """(SOPs, MACs) of layer `name` over all images of the report."""
    layer = by_name(report)[name]
    return layer.sops * report.images, layer.macs * report.images


def spikes_with_ones(shape: tuple[int, ...], ones: int) -> torch.Tensor:
    """A 0/1 tensor of `shape` whose first `ones` values (in memory order) are 1."""
    x = torch.zeros(shape)
    x.view(-1)[:ones] = 1
    return x


def firing(model: nn.Module) -> nn.Module:
    """`model` with BatchNorm shifts of -0.5 to 1.5, so that random weights fire."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            nn.init.uniform_(module.bias, -0.5, 1.5)
    return model


def test_every_convention_states_every_rule_and_unknown_names_list_the_choices():
    assert list(CONVENTIONS) == ["ours", "spikformer", "sdt", "syops", "spikingjelly"]
    for convention in CONVENTIONS.values():
        assert tuple(convention.rules) == RULE_TOPICS and all(convention.rules.values())
        assert (convention.e_mac_pj, convention.e_ac_pj) == (E_MAC_PJ, E_AC_PJ)
    with pytest.raises(ValueError, match="unknown energy convention 'nope'; valid: ours, "
                                         "spikformer, sdt, syops, spikingjelly"):
        measure_energy(nn.Linear(2, 2), torch.ones(1, 2), T=1, convention="nope")
    assert get_convention(CONVENTIONS["sdt"]) is CONVENTIONS["sdt"]


@pytest.mark.parametrize("convention", ["ours", "sdt", "spikformer", "syops"])
def test_a_conv_on_spikes_of_known_rate_counts_rate_x_T_x_flops(convention):
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    net = nn.Sequential(nn.Flatten(0, 1), conv)
    x = spikes_with_ones((T, B, 4, 8, 8), ones=T * B * 4 * 8 * 8 // 4)  # rate 1/4
    flops = 8 * 8 * 6 * 4 * 9
    layer = by_name(measure_energy(net, x, T=T, time_major=True, convention=convention))["1"]
    assert (layer.counted_as, layer.flops, layer.macs) == ("AC", flops, 0)
    assert layer.input_rate == 0.25
    assert layer.sops == 0.25 * T * flops
    assert layer.energy_mj == pytest.approx(E_AC_PJ * 0.25 * T * flops * 1e-9)


def test_spikingjelly_skips_the_taps_on_zero_padding():
    n = 6
    net = nn.Sequential(nn.Flatten(0, 1), nn.Conv2d(1, 1, 3, padding=1, bias=False))
    ones = torch.ones(1, 1, 1, n, n)
    exact = measure_energy(net, ones, T=1, time_major=True, convention="spikingjelly")
    dense = measure_energy(net, ones, T=1, time_major=True, convention="ours")
    assert by_name(exact)["1"].sops == (3 * n - 2) ** 2  # taps inside the input, per axis
    assert by_name(dense)["1"].sops == 9 * n * n
    corner = spikes_with_ones((1, 1, 1, n, n), ones=1)  # one spike at (0, 0) reaches 2 x 2
    assert by_name(measure_energy(net, corner, T=1, time_major=True,
                                  convention="spikingjelly"))["1"].sops == 4


class SpikeProduct(nn.Module):
    """`A @ B` of two spike maps `[T, B, 2, M, K]` (A and B stacked on axis 2, B's first K rows
    used)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, 0] @ x[:, :, 1]


def test_spike_x_spike_products_per_convention():
    m = k = 6
    a = torch.ones(T, B, m, k)
    b = torch.zeros(T, B, k, k)
    b[..., :2, :] = 1  # two ones per column: rate 1/3
    x = torch.stack([a, b], dim=2)
    dense = m * k * k  # ops of one step and image
    counts = {c: measure_energy(SpikeProduct(), x, T=T, time_major=True, convention=c).sops
              for c in ("ours", "sdt", "spikformer", "spikingjelly", "syops")}
    assert counts["ours"] == counts["sdt"] == T * dense  # gated by A (rate 1)
    assert counts["spikformer"] == T * dense / 3  # the sparser operand, B
    assert counts["spikingjelly"] == T * m * k * 2  # pairs of ones that meet
    assert counts["syops"] == 0  # not a module: syops does not see it


@pytest.mark.parametrize("convention, steps_counted", [
    ("ours", 1), ("sdt", T), ("spikformer", T), ("spikingjelly", T), ("syops", T)])
def test_a_static_image_counts_once_in_ours_and_T_times_in_the_others(convention,
                                                                      steps_counted):
    net = nn.Sequential(nn.Flatten(0, 1), nn.Conv2d(3, 8, 3, padding=1, bias=False))
    image = torch.randn(1, B, 3, 8, 8).repeat(T, 1, 1, 1, 1)
    layer = by_name(measure_energy(net, image, T=T, time_major=True, convention=convention))["1"]
    flops = 8 * 8 * 8 * 3 * 9
    assert (layer.counted_as, layer.sops, layer.macs) == ("MAC", 0, steps_counted * flops)


def test_spikformer_counts_sums_of_spike_maps_as_that_many_accumulates_with_biases():
    linear = nn.Linear(4, 3)
    net = nn.Sequential(linear)
    counts = torch.tensor([0.0, 1.0, 2.0, 1.0])  # mean 1: spike maps added
    x = torch.stack([counts.roll(t) for t in range(T)])[:, None, None].repeat(1, B, 5, 1)
    ops, bias_ops = T * B * 5 * 4 * 3, T * B * 5 * 3
    sops, macs = totals(measure_energy(net, x, T=T, time_major=True, convention="spikformer"),
                        "0")
    assert (sops, macs) == (1.0 * (ops + bias_ops), 0)
    sops, macs = totals(measure_energy(net, x, T=T, time_major=True, convention="ours"), "0")
    assert (sops, macs) == (0, ops)  # ours: not 0/1, a MAC layer


def test_syops_counts_modules_as_syops_does():
    lif = MultiStepLIF(backend="torch")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn, self.lif = nn.BatchNorm2d(3), lif
            self.pool, self.fc, self.relu = nn.MaxPool2d(2), nn.Linear(12, 5), nn.ReLU()
            nn.init.constant_(self.fc.bias, 5.0)  # outputs > 1: not spikes by syops' test

        def forward(self, x):  # [T, B, 3, 4, 4]
            s = self.lif(self.bn(x.flatten(0, 1)).unflatten(0, x.shape[:2]))
            return self.relu(self.fc(self.pool(s.flatten(0, 1)).flatten(1)))

    torch.manual_seed(3)
    net, x = Net().eval(), torch.randn(T, B, 3, 4, 4) * 3
    with torch.no_grad():
        spikes = lif(net.bn(x.flatten(0, 1)).unflatten(0, x.shape[:2]))
        pooled = net.pool(spikes.flatten(0, 1)).flatten(1)
    report = measure_energy(net, x, T=T, time_major=True, convention="syops")
    numel = x.numel()
    assert 0 < spikes.mean() < pooled.mean() < 1
    assert totals(report, "bn") == (0, 2 * numel)  # affine: 2 per element, real input: MAC
    assert totals(report, "lif") == (numel, 0)  # one AC per input element, whatever the rate
    assert totals(report, "pool") == (pytest.approx(numel * spikes.mean().item()), 0)
    fc_ops = pooled.numel() * 5 + 5  # the bias once per call
    assert totals(report, "fc") == (pytest.approx(fc_ops * pooled.mean().item()), 0)
    assert totals(report, "relu") == (0, T * B * 5)


def test_syops_counts_a_neurons_norm_as_a_batchnorm_of_its_own():
    torch.manual_seed(0)
    bn, lif = nn.BatchNorm2d(3), MultiStepLIF(backend="torch")
    nn.init.uniform_(bn.bias, 0.0, 1.5)

    class Fused(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn, self.lif = bn, lif

        def forward(self, x):
            return self.lif(x, norm=self.bn)

    class Apart(Fused):
        def forward(self, x):
            return self.lif(self.bn(x.flatten(0, 1)).unflatten(0, x.shape[:2]))

    x = torch.randn(T, B, 3, 4, 4)
    fused = measure_energy(Fused(), x, T=T, time_major=True, convention="syops")
    apart = measure_energy(Apart(), x, T=T, time_major=True, convention="syops")
    assert [(la.name, la.sops, la.macs) for la in fused.layers] == [
        (la.name, la.sops, la.macs) for la in apart.layers]
    assert [la.name for la in fused.layers] == ["bn", "lif"]
    assert totals(fused, "bn") == (0, 2 * x.numel())


def test_spikformer_preset_reproduces_the_published_macs_of_spikformer_4_384():
    """Worked example: ZK-Zhou/spikformer issue #23 prints, for Spikformer-4-384 on CIFAR-10
    (T 4) counted by the code its first author points to in issue #16 (zhouchenlin2096/
    Spikingformer, energy_consumption_calculation), "Number of operations: 0.005312266 G MACs":
    the first convolution T times, 4 x 32 x 32 x 48 x 27, plus the head on time-averaged
    features, 384 x 10 weights + 10 biases. MACs do not depend on the weights."""
    torch.manual_seed(0)
    model = firing(timm.create_model("spikformer_4_384", lif_backend="torch"))
    report = measure_energy(model, torch.randn(1, 3, 32, 32), convention="spikformer")
    assert report.T == 4
    assert report.macs == 5_312_266
    assert [layer.name for layer in report.layers if layer.macs] == ["patch_embed.proj_conv",
                                                                      "head"]


def test_spikformer_preset_counts_ssa_as_its_authors_code():
    """Spikingformer's energy_consumption_calculation/flops_counter.py (get_energy_cost), the
    code Spikformer's first author points to: SSA adds T x h x N x d^2 x (min(rate K, rate V)
    + rate Q) accumulates per block, the rates those of the q, k, v neurons."""
    torch.manual_seed(1)
    model = firing(timm.create_model("spikformer_4_384", lif_backend="torch", depth=2))
    report = measure_energy(model, torch.randn(1, 3, 32, 32), convention="spikformer")
    rates = {n.name: n.rate for n in report.neurons}
    layers = by_name(report)
    heads, tokens, d = 12, 8 * 8, 384 // 12
    for block in range(2):
        attn = f"block.{block}.attn"
        r_q, r_k, r_v = (rates[f"{attn}.{n}_lif"] for n in "qkv")
        assert 0 < min(r_q, r_k, r_v)
        ssa = layers[f"{attn}.matmul0"].sops + layers[f"{attn}.matmul1"].sops
        assert ssa == pytest.approx(4 * heads * tokens * d * d * (min(r_k, r_v) + r_q))


def test_sdt_preset_follows_table_1_of_the_paper():
    """Yao et al., Spike-driven Transformer (NeurIPS 2023), Table 1: first conv E_MAC x T x
    FL_Conv (real-valued input, rate 1); other convs E_AC x T x R_C x FL_Conv; Q, K, V
    E_AC x T x R^ x 3ND^2 (R^ the rate of their input); f(Q, K, V) E_AC x T x R~ x ND (R~ the
    rate of K * V, summed over tokens); linear and MLP layers E_AC x T x R_M x FL_MLP. Worked on
    sdt_2_512 at width 64 with the rates measured by hooks."""
    torch.manual_seed(2)
    steps = 2
    model = firing(timm.create_model("sdt_2_512", lif_backend="torch", embed_dims=64,
                                     depth=1, T=steps))
    attn = model.block[0].attn
    for norm in (attn.k_bn, attn.v_bn):
        nn.init.constant_(norm.bias, 2.5)
    seen = {}
    for name in ("shortcut_lif", "k_lif", "v_lif"):
        getattr(attn, name).register_forward_hook(
            lambda m, args, out, name=name: seen.__setitem__(name, out.flatten(3)))
    report = measure_energy(model, torch.randn(1, 3, 32, 32), convention="sdt")
    layers = by_name(report)
    first = layers["patch_embed.proj_conv"]
    assert (first.counted_as, first.macs) == ("MAC", steps * 32 * 32 * 8 * 3 * 9)
    tokens, dim = 8 * 8, 64
    r_hat = seen["shortcut_lif"].mean().item()
    r_tilde = (seen["k_lif"] * seen["v_lif"]).mean().item()
    assert 0 < r_hat and 0 < r_tilde
    qkv = sum(layers[f"block.0.attn.{n}_conv"].sops for n in "qkv")
    assert qkv == pytest.approx(steps * r_hat * 3 * tokens * dim * dim)
    assert layers["block.0.attn.sum0"].sops == pytest.approx(steps * r_tilde * tokens * dim)
    ours = measure_energy(model, torch.randn(1, 3, 32, 32), convention="ours")
    assert by_name(ours)["patch_embed.proj_conv"].macs == first.macs / steps
