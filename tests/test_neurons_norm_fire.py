"""BatchNorm then neuron, fused: the same spikes, gradients and running statistics as the two
layers one after the other, while keeping only the BatchNorm input for backward."""

import pytest
import torch
from torch import nn

from models.layers.spiking import per_step
from models.neurons import MultiStepLIF
from models.spike_storage import kept_for_backward


def run(z, norm, neuron, fused: bool):
    z = z.clone().requires_grad_()
    spikes, saved = kept_for_backward(
        lambda: neuron(z, norm=norm) if fused else neuron(per_step(z, norm)), norm.parameters()
    )
    grad = torch.linspace(-1, 1, spikes.numel(), dtype=z.dtype).reshape(spikes.shape)
    (spikes * grad).sum().backward()
    grads = [z.grad] + [p.grad.clone() for p in norm.parameters()]
    for p in norm.parameters():
        p.grad = None
    stats = [b.clone() for b in norm.buffers()]
    return spikes, grads, stats, saved


@pytest.mark.parametrize(
    "norm, shape",
    [
        (nn.BatchNorm2d(6), (3, 2, 6, 5, 5)),
        (nn.BatchNorm1d(6, momentum=None), (2, 3, 6, 40)),
        (nn.BatchNorm2d(6, affine=False), (3, 2, 6, 5, 5)),
    ],
)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_fused_equals_unfused_bit_for_bit(norm, shape, training, backend):
    torch.manual_seed(0)
    norm = norm.double().train(training)
    if norm.affine:
        nn.init.normal_(norm.weight, 2.0, 0.5)
        nn.init.normal_(norm.bias, 0.5, 0.5)
    nn.init.uniform_(norm.running_var, 0.5, 1.5)
    neuron = MultiStepLIF(backend=backend)
    z = torch.randn(shape, dtype=torch.float64)
    state = {k: v.clone() for k, v in norm.state_dict().items()}
    plain = run(z, norm, neuron, fused=False)
    norm.load_state_dict(state)
    fused = run(z, norm, neuron, fused=True)
    assert 0 < plain[0].mean() < 1
    assert torch.equal(fused[0], plain[0])
    for a, b in zip(fused[1] + fused[2], plain[1] + plain[2], strict=True):
        assert torch.equal(a, b)
    assert fused[3] < plain[3]


def test_hooks_of_the_neuron_see_its_input_and_spikes():
    norm, neuron = nn.BatchNorm2d(4), MultiStepLIF(backend="torch")
    seen = []
    neuron.register_forward_hook(lambda mod, args, out: seen.append((args[0], out)))
    z = torch.randn(2, 3, 4, 5, 5)
    spikes = neuron(z, norm=norm)
    assert len(seen) == 1 and seen[0][0] is z and seen[0][1] is spikes


def test_spikingjelly_neurons_run_unfused():
    norm, neuron = nn.BatchNorm2d(4), MultiStepLIF(backend="spikingjelly")
    z = torch.randn(2, 3, 4, 5, 5)
    assert torch.equal(neuron(z, norm=norm), neuron(per_step(z, norm)))
