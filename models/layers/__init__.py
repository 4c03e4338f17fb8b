"""Building blocks of the spiking networks: neurons' factory, embeddings, mixers, MLP, blocks."""

from models.layers.blocks import BlockSequence, SpikingBlock, run_checkpointed
from models.layers.drop_path import TimeMajorDropPath
from models.layers.embeddings import (
    EMBEDDINGS,
    create_embedding,
    embedding_stride,
    has_stem_level,
)
from models.layers.mixers import MIXERS, create_mixer
from models.layers.mlp import SpikingMLP
from models.layers.residual import MSBasicBlock
from models.layers.spiking import (
    ATTENTION_THRESHOLD,
    NEURONS,
    TWINS,
    NeuronFactory,
    neuron_factory,
    per_step,
    pool,
)

__all__ = [
    "ATTENTION_THRESHOLD",
    "BlockSequence",
    "EMBEDDINGS",
    "MIXERS",
    "NEURONS",
    "NeuronFactory",
    "MSBasicBlock",
    "SpikingBlock",
    "SpikingMLP",
    "TWINS",
    "TimeMajorDropPath",
    "create_embedding",
    "create_mixer",
    "embedding_stride",
    "has_stem_level",
    "neuron_factory",
    "per_step",
    "pool",
    "run_checkpointed",
]
