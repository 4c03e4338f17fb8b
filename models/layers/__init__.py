"""Building blocks of the spiking networks: neurons' factory, embeddings, mixers, MLP, blocks."""

from models.layers.blocks import SpikingBlock
from models.layers.embeddings import EMBEDDINGS, create_embedding, embedding_stride
from models.layers.mixers import MIXERS, create_mixer
from models.layers.mlp import SpikingMLP
from models.layers.residual import MSBasicBlock
from models.layers.spiking import ATTENTION_THRESHOLD, LIFFactory, lif_factory, per_step

__all__ = [
    "ATTENTION_THRESHOLD",
    "EMBEDDINGS",
    "MIXERS",
    "LIFFactory",
    "MSBasicBlock",
    "SpikingBlock",
    "SpikingMLP",
    "create_embedding",
    "create_mixer",
    "embedding_stride",
    "lif_factory",
    "per_step",
]
