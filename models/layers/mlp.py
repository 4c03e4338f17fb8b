"""The spiking channel MLP of every Max-Former / MS-QKFormer block."""

from torch import Tensor, nn

from models.layers.drop_path import TimeMajorDropPath
from models.layers.spiking import NeuronFactory, per_step


class SpikingMLP(nn.Module):
    """LIF -> 1x1 conv -> BN -> LIF -> 1x1 conv -> BN, added to the input membrane potential.

    `[T, B, dim, H, W] -> [T, B, dim, H, W]`. When the hidden width equals `dim` (mlp ratio 1)
    the hidden layer also gets a membrane shortcut, as in the published models. `drop_path`:
    stochastic depth rate of each branch added by a shortcut.
    """

    def __init__(
        self, dim: int, hidden_dim: int, neuron: NeuronFactory, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.hidden_shortcut = hidden_dim == dim
        self.fc1_lif = neuron()
        self.fc1_conv = nn.Conv2d(dim, hidden_dim, 1)
        self.fc1_bn = nn.BatchNorm2d(hidden_dim)
        self.fc2_lif = neuron()
        self.fc2_conv = nn.Conv2d(hidden_dim, dim, 1)
        self.fc2_bn = nn.BatchNorm2d(dim)
        self.drop_path = TimeMajorDropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        hidden = per_step(self.fc1_lif(x), self.fc1_conv)
        if self.hidden_shortcut:
            x = x + self.drop_path(per_step(hidden, self.fc1_bn))
            spikes = self.fc2_lif(x)
        else:
            spikes = self.fc2_lif(hidden, norm=self.fc1_bn)
        return x + self.drop_path(per_step(spikes, self.fc2_conv, self.fc2_bn))
