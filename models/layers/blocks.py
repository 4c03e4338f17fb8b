"""Blocks of the spiking MetaFormer family: a token mixer, then a spiking MLP."""

from torch import Tensor, nn

from models.layers.mixers import create_mixer
from models.layers.mlp import SpikingMLP
from models.layers.spiking import NeuronFactory


class SpikingBlock(nn.Module):
    """Token mixer then spiking MLP, each with its own membrane shortcut.

    `[T, B, dim, H, W] -> [T, B, dim, H, W]`. The mixer is stored under its `checkpoint_name`
    (`mixer` or `attn`), as in the published checkpoints.
    """

    def __init__(
        self, dim: int, mixer: str, neuron: NeuronFactory, num_heads: int = 8,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        token_mixer = create_mixer(mixer, dim, neuron, num_heads)
        self._mixer_name = token_mixer.checkpoint_name
        self.add_module(self._mixer_name, token_mixer)
        self.mlp = SpikingMLP(dim, int(dim * mlp_ratio), neuron)

    @property
    def token_mixer(self) -> nn.Module:
        return getattr(self, self._mixer_name)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(self.token_mixer(x))
