"""Spiking networks of the Max-Former paper on one fused multi-step LIF neuron.

`import models` registers the presets with timm (`timm.create_model("maxformer_cifar")`).

Imported before torch, it makes OpenMP's idle threads sleep (``OMP_WAIT_POLICY=PASSIVE``,
unless set): spinning threads cost a CPU each while other processes wait for it.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from models.checkpoint import CheckpointError, checkpoint_filter_fn, load_checkpoint
from models.zoo import MaxResNet, SpikingFormer

__all__ = [
    "CheckpointError",
    "MaxResNet",
    "SpikingFormer",
    "checkpoint_filter_fn",
    "load_checkpoint",
]
