"""The neuron every layer uses, and the time-major helper shared by all layers.

Tensors inside the networks are time-major: `[T, B, C, H, W]`. Frame-wise layers (convolution,
BatchNorm, pooling) see the time steps as a larger batch, `[T * B, C, H, W]`.
"""

from collections.abc import Callable
from functools import partial

from torch import Tensor, nn

from models.neurons import MultiStepLIF

LIFFactory = Callable[..., nn.Module]
"""Constructor of a model's neurons: `lif()` for a standard neuron, `lif(v_threshold=0.5)`."""

ATTENTION_THRESHOLD = 0.5
"""Firing threshold of the neuron on attention scores (SSA, QK-attention), as published."""


def lif_factory(backend: str = "auto") -> LIFFactory:
    """The one place where the models' neurons are configured.

    LIF with tau 2, threshold 1, hard reset to 0, decay_input, detached reset and the sigmoid
    surrogate (alpha 4): spikingjelly 0.0.0.0.12's `MultiStepLIFNode(tau=2.0, detach_reset=True)`.
    """
    return partial(
        MultiStepLIF,
        tau=2.0,
        v_threshold=1.0,
        v_reset=0.0,
        decay_input=True,
        detach_reset=True,
        surrogate="sigmoid",
        backend=backend,
    )


def per_step(x: Tensor, *layers: Callable[[Tensor], Tensor]) -> Tensor:
    """Apply frame-wise `layers` in order to every time step: `[T, B, ...] -> [T, B, ...']`."""
    steps, batch = x.shape[:2]
    y = x.flatten(0, 1)
    for layer in layers:
        y = layer(y)
    return y.reshape(steps, batch, *y.shape[1:])
