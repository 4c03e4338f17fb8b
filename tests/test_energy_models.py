"""Energy measurement of the model zoo: the first layer, event input, attention, per-stage sums."""

import pytest
import timm
import torch
from torch import nn

import models.zoo  # noqa: F401  (registers the zoo with timm)
from models.energy import E_AC_PJ, E_MAC_PJ, measure_energy, stage_firing_rates
from models.neurons import MultiStepLIF


def firing_model(name: str, **kwargs) -> nn.Module:
    """A small zoo model whose neurons fire: BatchNorm shifts of -0.5 to 1.5 (random weights
    alone barely reach the threshold)."""
    torch.manual_seed(0)
    model = timm.create_model(name, lif_backend="torch", embed_dims=64, **kwargs)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            nn.init.uniform_(module.bias, -0.5, 1.5)
    return model


def test_maxformer_10_384_first_layer_on_a_static_image_counts_once():
    torch.manual_seed(0)
    model = timm.create_model("maxformer_10_384", T=4, lif_backend="torch")
    report = measure_energy(model, torch.randn(1, 3, 224, 224))
    first = report.layers[0]
    assert first.name == "patch_embed1.embed1.embed_conv"
    assert first.counted_as == "MAC"
    assert first.macs == first.flops == 112 * 112 * 48 * 3 * 9
    assert first.ops == 4 * first.flops
    assert all(layer.counted_as == "AC" for layer in report.layers[1:] if layer.name != "head")
    assert report.energy_mj == pytest.approx(sum(p.energy_mj for p in report.parts()))
    stages = [p.stage for p in report.parts()]
    runs = [s for i, s in enumerate(stages) if i == 0 or s != stages[i - 1]]
    assert runs == ["stage 1", "stage 2", "stage 3", "classifier"]


@pytest.mark.parametrize("same_frames, steps_counted", [(False, 4), (True, 1)])
def test_event_input_counts_T_times_unless_frames_repeat(same_frames, steps_counted):
    torch.manual_seed(1)
    model = timm.create_model("maxformer_event", lif_backend="torch", embed_dims=64)
    frames = torch.poisson(torch.full((1, 4, 2, 32, 32), 0.5))
    if same_frames:
        frames = frames[:, :1].repeat(1, 4, 1, 1, 1)
    first = measure_energy(model, frames).layers[0]
    assert first.name == "patch_embed1.proj_conv" and first.counted_as == "MAC"
    assert first.flops == 32 * 32 * (32 // 8) * 2 * 9  # stage 1 is 32 wide
    assert first.macs == steps_counted * first.flops


def test_parts_and_layers_add_up_and_rates_match_the_neurons():
    model = firing_model("maxformer_cifar", T=2).train()
    images = torch.randn(2, 3, 32, 32)
    report = measure_energy(model, images)
    assert model.training
    assert report.sops > 0
    assert report.energy_mj == pytest.approx(sum(p.energy_mj for p in report.parts()))
    assert report.energy_mj == pytest.approx(sum(layer.energy_mj for layer in report.layers))
    assert report.energy_mj == pytest.approx((E_MAC_PJ * report.macs + E_AC_PJ * report.sops)
                                             * 1e-9)
    assert report.ann_energy_mj == pytest.approx(E_MAC_PJ * report.flops * 1e-9)
    layers = {layer.name: layer for layer in report.layers}
    neurons = {neuron.name: neuron.rate for neuron in report.neurons}
    fc1 = layers["stage2.0.mlp.fc1_conv"]
    assert 0 < fc1.input_rate < 1
    assert fc1.input_rate == pytest.approx(neurons["stage2.0.mlp.fc1_lif"])
    assert (fc1.stage, fc1.part) == ("stage 2", "MLP")
    # SSA of stage 3: 64 channels, 8 heads of 8, 8 x 8 tokens; k^T v then q (k^T v)
    for product in ("matmul0", "matmul1"):
        layer = layers[f"stage3.0.attn.{product}"]
        assert layer.flops == 8 * 8 * 64 * 8
        assert (layer.kind, layer.counted_as, layer.part) == ("matmul", "AC", "token mixer")
    assert layers["stage3.0.attn.matmul1"].input_rate == pytest.approx(
        neurons["stage3.0.attn.q_lif"]
    )


def test_stage_firing_rates_are_the_mean_over_each_stage_neurons():
    model = firing_model("maxformer_cifar", T=2)
    images = torch.randn(1, 3, 32, 32)
    spikes: dict[str, list[float]] = {}

    def record(stage: str):
        def hook(module, args, out):
            total = spikes.setdefault(stage, [0.0, 0.0])
            total[0] += out.sum().item()
            total[1] += out.numel()

        return hook

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, MultiStepLIF):
            top = name.split(".")[0]
            stage = f"stage {top[-1]}" if top[-1].isdigit() else "classifier"
            handles.append(module.register_forward_hook(record(stage)))
    with torch.no_grad():
        model.eval()(images)
    for handle in handles:
        handle.remove()
    rates = stage_firing_rates(model, images)
    assert list(rates) == ["stage 1", "stage 2", "stage 3", "classifier"]
    for stage, (count, size) in spikes.items():
        assert rates[stage] == pytest.approx(count / size)


def test_qk_attention_channel_sum_is_one_accumulate_per_spike():
    model = firing_model("ms_qkformer_cifar", T=2)
    report = measure_energy(model, torch.randn(1, 3, 32, 32))
    layers = {layer.name: layer for layer in report.layers}
    token_sum = layers["stage1.0.attn.sum0"]
    assert token_sum.kind == "sum" and token_sum.counted_as == "AC"
    assert token_sum.flops == 16 * 32 * 32  # stage 1: 16 channels, 32 x 32 tokens
    rate = {n.name: n.rate for n in report.neurons}["stage1.0.attn.q_lif"]
    assert token_sum.sops == pytest.approx(rate * 2 * token_sum.flops)
