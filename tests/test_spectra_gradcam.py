"""Grad-CAM (models.gradcam) puts its mass where the logit looks, for CNNs and spiking networks."""

import pytest
import torch
from spikingjelly.activation_based import neuron as sj_neuron
from torch import nn

from models.gradcam import grad_cam, last_map_layer
from models.neurons import MultiStepLIF

SIZE = 16
QUADRANTS = {"top left": (0, 0), "top right": (0, 1), "bottom left": (1, 0),
             "bottom right": (1, 1)}


def quadrant_mask(quadrant: tuple[int, int]) -> torch.Tensor:
    mask = torch.zeros(SIZE, SIZE)
    row, column = quadrant
    half = SIZE // 2
    mask[row * half:(row + 1) * half, column * half:(column + 1) * half] = 1.0
    return mask


class Quadrant(nn.Module):
    """Keeps one quadrant of the image: everything after it depends on that quadrant only."""

    def __init__(self, quadrant: tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer("mask", quadrant_mask(quadrant))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


class CNN(nn.Module):
    def __init__(self, quadrant: tuple[int, int]) -> None:
        super().__init__()
        self.keep = Quadrant(quadrant)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 1, bias=False), nn.ReLU())
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.keep(x)).mean((-2, -1)))


class SpikingCNN(nn.Module):
    """Time-major: the image repeated over T, conv per step, our LIF; logits averaged over T."""

    def __init__(self, quadrant: tuple[int, int], steps: int = 4) -> None:
        super().__init__()
        self.steps = steps
        self.keep = Quadrant(quadrant)
        self.conv = nn.Conv2d(3, 8, 1, bias=False)
        self.lif = MultiStepLIF(tau=2.0, v_threshold=0.3, backend="torch")
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.keep(x)
        frames = self.conv(x).unsqueeze(0).repeat(self.steps, 1, 1, 1, 1)  # [T, B, C, H, W]
        return self.head(self.lif(frames).mean((-2, -1))).mean(0)


class SpikingJellyCNN(nn.Module):
    """A spikingjelly multi-step network; its feature layer sees frames [T * B, C, H, W]."""

    def __init__(self, quadrant: tuple[int, int], steps: int = 4) -> None:
        super().__init__()
        self.steps = steps
        self.keep = Quadrant(quadrant)
        self.conv = nn.Conv2d(3, 8, 1, bias=False)
        self.lif = sj_neuron.LIFNode(v_threshold=0.3, step_mode="m")
        self.mix = nn.Conv2d(8, 8, 1, bias=False)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.lif.reset()
        frames = self.conv(self.keep(x)).unsqueeze(0).repeat(self.steps, 1, 1, 1, 1)
        features = self.mix(self.lif(frames).flatten(0, 1))  # [T * B, C, H, W]
        return self.head(features.mean((-2, -1))).unflatten(0, (self.steps, -1)).mean(0)


def images() -> torch.Tensor:
    return torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) + 0.5


@pytest.mark.parametrize("quadrant", list(QUADRANTS), ids=list(QUADRANTS))
@pytest.mark.parametrize("network", ["cnn", "spiking", "spikingjelly"])
def test_grad_cam_puts_its_mass_in_the_quadrant_the_logit_depends_on(network, quadrant):
    torch.manual_seed(1)
    where = QUADRANTS[quadrant]
    if network == "cnn":
        model, layer = CNN(where), "features"
    elif network == "spiking":
        model, layer = SpikingCNN(where), "lif"
    else:
        model, layer = SpikingJellyCNN(where), "mix"
    model.eval()
    x = images()
    heat, classes = grad_cam(model, x, model.get_submodule(layer))
    assert heat.shape == (3, SIZE, SIZE) and classes.shape == (3,)
    with torch.no_grad():
        assert torch.equal(classes, model(x).argmax(1))
    assert heat.min() >= 0.0 and torch.allclose(heat.flatten(1).amax(1), torch.ones(3))
    inside = (heat * quadrant_mask(where)).sum((-2, -1)) / heat.sum((-2, -1))
    assert bool((inside > 0.99).all()), inside


def test_grad_cam_explains_the_given_classes():
    model = CNN((0, 0)).eval()
    x = images()
    wanted = torch.tensor([3, 0, 1])
    _, classes = grad_cam(model, x, model.features, classes=wanted)
    assert torch.equal(classes, wanted)


def test_grad_cam_rejects_a_layer_that_does_not_run_and_outputs_that_are_not_maps():
    model = CNN((0, 0)).eval()
    with pytest.raises(ValueError, match="Linear layer did not run"):
        grad_cam(model, images(), nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"layer output of shape \(3, 4\) is not maps"):
        grad_cam(model, images(), model.head)


def test_last_map_layer_is_the_outermost_module_of_the_last_map():
    assert last_map_layer(CNN((0, 0)), images()) == "features"
    assert last_map_layer(SpikingJellyCNN((0, 0)), images()) == "mix"
    with pytest.raises(ValueError, match="no submodule of the Linear outputs maps"):
        last_map_layer(nn.Linear(4, 2), torch.zeros(1, 4))
