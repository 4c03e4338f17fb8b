"""Spiking networks of the Max-Former paper on one fused multi-step LIF neuron.

`import models.zoo` (or reading any name below, e.g. `from models import SpikingFormer`)
registers the presets with timm (`timm.create_model("maxformer_cifar")`). `import models`
alone imports neither torch nor timm, so that the `maxformer` command line answers at once.

Imported before torch, it makes OpenMP's idle threads sleep (``OMP_WAIT_POLICY=PASSIVE``,
unless set): spinning threads cost a CPU each while other processes wait for it.
"""

import importlib
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_NAMES = {
    "CheckpointError": "models.checkpoint",
    "checkpoint_filter_fn": "models.checkpoint",
    "load_checkpoint": "models.checkpoint",
    "MaxResNet": "models.zoo",
    "SpikingFormer": "models.zoo",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    """The names of ``__all__``, imported when first read (PEP 562)."""
    if name not in _NAMES:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    importlib.import_module("models.zoo")  # registers the presets with timm
    return getattr(importlib.import_module(_NAMES[name]), name)
