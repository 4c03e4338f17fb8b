"""Twins: every zoo model as LIF (default), IF and ReLU network with the same state dict."""

import pytest
import timm
import torch

import models.zoo  # noqa: F401  (registers the zoo with timm)
from models.neurons import MultiStepIF, MultiStepLIF, MultiStepNeuron, MultiStepReLU

SMALL = {
    "maxformer_cifar": {"embed_dims": 32},
    "ms_qkformer_cifar": {"embed_dims": 32},
    "max_resnet18": {"embed_dims": (8, 16, 32), "stem_width": 8},
    "maxformer_event": {"embed_dims": 32, "num_heads": 4},
}


def build(name: str, neuron: str, **kwargs) -> torch.nn.Module:
    return timm.create_model(name, neuron=neuron, lif_backend="torch", **SMALL[name], **kwargs)


@pytest.mark.parametrize("name", list(SMALL))
def test_a_lif_checkpoint_loads_strictly_into_its_twins(name):
    lif = build(name, "lif")
    for neuron, kind in (("if", MultiStepIF), ("relu", MultiStepReLU)):
        twin = build(name, neuron)
        models.load_checkpoint(twin, lif.state_dict(), strict=True)
        assert list(twin.state_dict()) == list(lif.state_dict())
        layers = [m for m in twin.modules() if isinstance(m, (MultiStepNeuron, MultiStepReLU))]
        assert layers and all(isinstance(m, kind) for m in layers)
        assert not any(isinstance(m, MultiStepLIF) for m in twin.modules())


def test_relu_twin_is_not_binary_and_needs_no_time_loop_on_static_images():
    torch.manual_seed(0)
    steps4 = build("maxformer_cifar", "relu", T=4).eval()
    steps1 = build("maxformer_cifar", "relu", T=1).eval()
    steps1.load_state_dict(steps4.state_dict())
    x = torch.randn(2, 3, 32, 32)
    outputs = []
    hook = steps4.stage2[0].mlp.fc1_lif.register_forward_hook(
        lambda module, args, out: outputs.append(out)
    )
    with torch.no_grad():
        four, one = steps4(x), steps1(x)
    hook.remove()
    assert not bool(((outputs[0] == 0) | (outputs[0] == 1)).all())
    torch.testing.assert_close(four, one, rtol=1e-5, atol=1e-6)


def test_unknown_neuron_names_the_choices():
    with pytest.raises(ValueError, match="unknown neuron 'gelu'; valid: lif, if, relu"):
        timm.create_model("maxformer_cifar", neuron="gelu")
