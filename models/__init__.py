"""Spiking networks of the Max-Former paper on one fused multi-step LIF neuron.

`import models` registers the presets with timm (`timm.create_model("maxformer_cifar")`).
"""

from models.checkpoint import CheckpointError, checkpoint_filter_fn, load_checkpoint
from models.zoo import MaxResNet, SpikingFormer

__all__ = [
    "CheckpointError",
    "MaxResNet",
    "SpikingFormer",
    "checkpoint_filter_fn",
    "load_checkpoint",
]
