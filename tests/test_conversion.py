"""ANN-to-SNN conversion (models.conversion): rates approach the ANN's activations as T grows,
QCFS at T = L is exact, converted networks load strictly and run in chunks, refusals."""

import pytest
import timm
import torch

import models.zoo  # noqa: F401  (registers the zoo)
from models.checkpoint import load_checkpoint
from models.conversion import (
    ConversionError,
    GatedMaxPool,
    convert,
    forward_in_chunks,
)
from models.conversion.convert import TimeSteps
from models.neurons import ConvertedIF, MultiStepQCFS

TINY = {
    "max_resnet18": {"embed_dims": (8, 16, 32), "stem_width": 8},
    "maxformer_cifar": {"embed_dims": 16, "mixers": ("identity", "dwc3", "max_pool"),
                        "mlp_ratio": 2.0},
}


def tiny_ann(name: str, neuron: str = "relu", seed: int = 0) -> torch.nn.Module:
    """A small ANN twin with BatchNorm statistics that make its activations non-trivial."""
    torch.manual_seed(seed)
    model = timm.create_model(name, neuron=neuron, T=1, in_chans=1, num_classes=5,
                              lif_backend="torch", **TINY[name])
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.2, 0.2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.3)
    return model.eval()


@pytest.mark.parametrize("name", list(TINY))
def test_rates_approach_the_anns_activations_as_T_grows(name):
    ann = tiny_ann(name)
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = ann(x)
        snn = convert(ann, [x], percentile=100.0, backend="torch")
        errors = [float((forward_in_chunks(snn, x, T, chunk=64) - reference).abs().mean())
                  for T in (8, 32, 128)]
    scale = float(reference.abs().mean())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < errors[0] / 4  # roughly 1/T (16x over these T); at least 4x
    assert errors[2] < 0.1 * scale


def test_qcfs_at_T_equal_L_equals_the_quantised_activation_exactly():
    """Bu et al.'s theorem: an IF neuron (soft reset, threshold lambda, membrane starting at
    lambda / 2) fed a constant input z for T = L steps fires lambda/L clip(floor(z L / lambda
    + 1/2), 0, L) on average. Dyadic inputs make every sum exact."""
    levels, lam = 8, 0.75
    z = torch.arange(-40, 120, dtype=torch.float64) / 64  # below 0, every step, above lambda
    qcfs = MultiStepQCFS(levels=levels, threshold=lam).double()
    with torch.no_grad():
        expected = qcfs(z[None])[0]
        closed_form = lam / levels * torch.clamp(torch.floor(z * levels / lam + 0.5), 0, levels)
        neuron = ConvertedIF(threshold=lam, backend="torch").double()
        rates = neuron(z.expand(levels, -1)).mean(0) * lam
    torch.testing.assert_close(expected, closed_form, rtol=0, atol=1e-12)
    torch.testing.assert_close(rates, expected, rtol=0, atol=1e-12)


def test_a_converted_qcfs_networks_first_neurons_equal_the_anns_at_T_equal_L():
    """The first neurons after the stem see the same input at every step: at T = L their
    mean output is the QCFS activation (up to rounding at the floor's steps)."""
    ann = tiny_ann("max_resnet18", neuron="qcfs").double()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    outputs = {}
    hook = lambda key: lambda m, a, out: outputs.__setitem__(key, out)  # noqa: E731
    with torch.no_grad():
        ann.layer1[0].spike1.register_forward_hook(hook("ann"))
        ann(x)
        snn = convert(ann, backend="torch")
        snn.layer1[0].spike1.register_forward_hook(hook("snn"))
        snn.T = ann.layer1[0].spike1.levels
        snn(x)
    assert float(snn.layer1[0].spike1.threshold) == float(ann.layer1[0].spike1.threshold.detach())
    threshold = float(snn.layer1[0].spike1.threshold)
    torch.testing.assert_close(outputs["snn"].mean(0) * threshold, outputs["ann"][0], rtol=0,
                               atol=1e-9)


def test_gated_max_pool_tends_to_the_max_of_rates():
    """Inputs alternating 1, 0 (mean 0.5) beside a constant 0.4: the ANN's max-pool of the
    means is 0.5; the mean of per-step maxima would be 0.7."""
    T = 64
    alternating = torch.tensor([1.0, 0.0]).repeat(T // 2)
    x = torch.stack([alternating, torch.full((T,), 0.4)], dim=-1).reshape(T, 1, 1, 2)
    clock = TimeSteps()
    clock.steps = T
    pool = GatedMaxPool(torch.nn.MaxPool2d((1, 2)), clock)
    out = pool(x)
    assert out.shape == (T, 1, 1, 1)
    assert abs(float(out.mean()) - 0.5) < 1 / T
    assert float(torch.nn.functional.max_pool2d(x, (1, 2)).mean()) == pytest.approx(0.7)
    pool.carry = True
    pool(x)
    assert pool.state.shape == (1, 1, 1, 2)  # its own storage, not a view of every step's sums
    assert pool.state.untyped_storage().nbytes() == pool.state.numel() * 8


@pytest.mark.parametrize("source", ["relu", "qcfs"])
def test_the_converted_network_loads_strictly_into_the_zoos_if_converted_model(source):
    ann = tiny_ann("max_resnet18", neuron=source)
    x = torch.randn(4, 1, 8, 8)
    snn = convert(ann, [x], backend="torch")
    rebuilt = timm.create_model("max_resnet18", neuron="if_converted", T=1, in_chans=1,
                                num_classes=5, lif_backend="torch", **TINY["max_resnet18"])
    load_checkpoint(rebuilt, snn.state_dict(), strict=True)
    rebuilt.eval()
    assert isinstance(rebuilt.layer2[0].maxpool1, GatedMaxPool)
    with torch.no_grad():
        torch.testing.assert_close(forward_in_chunks(rebuilt, x, 12, chunk=5),
                                   forward_in_chunks(snn, x, 12, chunk=12))


def test_chunks_carry_the_state():
    """Chunks continue one another: the logits of one call at T steps. (Gated max-pools whose
    sums tie exactly may break the tie otherwise in chunks: sums of the same inputs in
    another order round differently; this network's do not tie.)"""
    snn = convert(tiny_ann("max_resnet18"), [torch.randn(4, 1, 8, 8)], backend="torch")
    x = torch.randn(3, 1, 8, 8)
    snn.T = 40
    with torch.no_grad():
        whole = snn(x)
        chunked = forward_in_chunks(snn, x, 40, chunk=16)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    assert snn.T == 40
    assert all(m.state is None for m in snn.modules() if isinstance(m, ConvertedIF))


@pytest.mark.parametrize("build, needle", [
    (lambda: timm.create_model("maxformer_cifar", neuron="relu", embed_dims=16, in_chans=1),
     "stage3.0.attn (SpikingSelfAttention)"),
    (lambda: timm.create_model("maxformer_cifar", neuron="relu", embed_dims=16, in_chans=1,
                               mixers=("identity", "dwc3", "qk")), "TokenQKAttention"),
    (lambda: tiny_ann("max_resnet18", neuron="lif"), "spiking already"),
    (lambda: timm.create_model("max_resnet18", neuron="relu", global_pool="max",
                               **TINY["max_resnet18"]), "global_pool 'max'"),
])
def test_layers_conversion_cannot_keep_are_refused_in_one_line(build, needle):
    with pytest.raises(ConversionError) as err:
        convert(build(), [torch.randn(2, 3, 8, 8)])
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_relu_network_needs_calibration_images():
    with pytest.raises(ConversionError, match="calibration images"):
        convert(tiny_ann("max_resnet18"))


def test_converted_neurons_fire_binary_spikes_and_their_readers_take_the_threshold():
    """Spikes stay 0/1 (energy counts them as synaptic operations); the threshold goes into
    the weights of the layers that read them: the head's classifier and the convolutions."""
    ann = tiny_ann("max_resnet18")
    x = torch.randn(4, 1, 8, 8)
    snn = convert(ann, [x], backend="torch")
    values = set()
    for module in snn.modules():
        if isinstance(module, ConvertedIF):
            module.register_forward_hook(lambda m, a, out: values.update(out.unique().tolist()))
    snn.T = 6
    with torch.no_grad():
        snn(x)
    assert values <= {0.0, 1.0} and values == {0.0, 1.0}
    for neuron, reader in (("spike", "fc1"), ("layer1.0.spike2", "layer1.0.conv2")):
        threshold = float(snn.get_submodule(neuron).threshold)
        torch.testing.assert_close(snn.get_submodule(reader).weight,
                                   ann.get_submodule(reader).weight * threshold)
