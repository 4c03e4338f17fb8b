"""Layers that a published network builds and never calls, kept for their checkpoint entries."""

from collections.abc import Callable

import torch
from torch import nn


class CheckpointOnly(nn.Module):
    """The weights of a layer the published code builds but never calls (Spikformer's
    LayerNorms `norm1`/`norm2`, SDSA's `talking_heads`), held as buffers under the layer's
    parameter names: the state dict has the original's keys and shapes, so its checkpoints
    load strictly, and the model's parameters are the ones its forward uses.

    In the original these weights never get a gradient, so its optimiser never moves them
    (and its training scripts need DistributedDataParallel's `find_unused_parameters=True`);
    here they are state that keeps its values as well. The papers' parameter counts leave them
    out. The module has no forward: nothing computes with it.

    Args:
        make: builds the layer (`functools.partial(nn.LayerNorm, 384)`); its freshly
            initialised parameters are the initial values, drawn as the original draws them.
    """

    def __init__(self, make: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.make = make
        layer = make()
        self.layer_repr = repr(layer)
        for name, param in layer.named_parameters():
            self.register_buffer(name, param.detach())

    def reset_parameters(self) -> None:
        """New initial values, drawn as the layer's constructor draws them."""
        with torch.device("cpu"):
            fresh = self.make()
        with torch.no_grad():
            for name, param in fresh.named_parameters():
                getattr(self, name).copy_(param)

    def extra_repr(self) -> str:
        return f"{self.layer_repr}, never called"
