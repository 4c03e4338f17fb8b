"""The neuron every layer uses, and the time-major helper shared by all layers.

Tensors inside the networks are time-major: `[T, B, C, H, W]`. Frame-wise layers (convolution,
BatchNorm, pooling) see the time steps as a larger batch, `[T * B, C, H, W]`.
"""

from collections.abc import Callable
from functools import partial

from timm.layers import register_notrace_module
from torch import Tensor, nn

from models.neurons import (
    ConvertedIF,
    MultiStepIF,
    MultiStepLIF,
    MultiStepNeuron,
    MultiStepQCFS,
    MultiStepReLU,
)

# torch.fx (timm's FX feature extraction, torchvision's create_feature_extractor with timm's
# leaf modules) keeps every spiking neuron as one call: its time loop is not traced through.
register_notrace_module(MultiStepNeuron)

NeuronFactory = Callable[..., nn.Module]
"""Constructor of a model's neurons: `neuron()` for a standard neuron,
`neuron(v_threshold=0.5)` for the attention neuron."""

NEURONS = ("lif", "if", "relu", "qcfs", "if_converted")
"""The neurons a model can be built with: the same layers; "qcfs" and "if_converted" (an ANN
trained for conversion, a converted network) add each neuron's threshold to the state dict,
`<neuron>.threshold`."""

TWINS = ("lif", "if", "relu")
"""The neurons whose networks share one state dict (twins: one set of weights runs as each)."""

QCFS_LEVELS = 8
"""Quantisation steps L of the "qcfs" activation (a converted network is exact at T = L)."""

ATTENTION_THRESHOLD = 0.5
"""Firing threshold of the neuron on attention scores (SSA, QK-attention), as published."""


def _relu(**neuron_kwargs: object) -> nn.Module:
    return MultiStepReLU()


def _qcfs(**neuron_kwargs: object) -> nn.Module:
    return MultiStepQCFS(levels=QCFS_LEVELS)


def _converted_if(backend: str, **neuron_kwargs: object) -> nn.Module:
    return ConvertedIF(backend=backend)


def neuron_factory(neuron: str = "lif", backend: str = "auto") -> NeuronFactory:
    """The one place where the models' neurons are configured.

    `"lif"`: LIF with tau 2, threshold 1, hard reset to 0, decay_input, detached reset and the
    sigmoid surrogate (alpha 4), spikingjelly 0.0.0.0.12's
    `MultiStepLIFNode(tau=2.0, detach_reset=True)`; `"if"`: the IF neuron with the same
    threshold, reset and surrogate; `"relu"`: ReLU (the ANN twin; thresholds are ignored);
    `"qcfs"`: the ANN twin made for conversion, QCFS with `QCFS_LEVELS` steps and a trained
    clip; `"if_converted"`: the IF neuron of a converted ANN (soft reset, a threshold per
    neuron, `models.conversion`; the zoo gates the max-pools of such a network).
    """
    common = dict(v_threshold=1.0, v_reset=0.0, detach_reset=True, surrogate="sigmoid")
    if neuron == "lif":
        return partial(MultiStepLIF, tau=2.0, decay_input=True, backend=backend, **common)
    if neuron == "if":
        return partial(MultiStepIF, backend=backend, **common)
    if neuron == "relu":
        return _relu
    if neuron == "qcfs":
        return _qcfs
    if neuron == "if_converted":
        return partial(_converted_if, backend=backend)
    raise ValueError(f"unknown neuron {neuron!r}; valid: {', '.join(NEURONS)}")


def pool(kind: str, stride: int) -> nn.Module:
    """3x3 max- or average-pooling (`kind` `"max"` or `"avg"`, padding 1, the average over
    the pixels inside the image) of frames `[N, C, H, W]`."""
    if kind == "max":
        return nn.MaxPool2d(kernel_size=3, stride=stride, padding=1)
    if kind == "avg":
        return nn.AvgPool2d(kernel_size=3, stride=stride, padding=1, count_include_pad=False)
    raise ValueError(f"unknown pooling {kind!r}; valid: 'max', 'avg'")


def per_step(x: Tensor, *layers: Callable[[Tensor], Tensor]) -> Tensor:
    """Apply frame-wise `layers` in order to every time step: `[T, B, ...] -> [T, B, ...']`."""
    y = x.flatten(0, 1)
    for layer in layers:
        y = layer(y)
    return y.unflatten(0, x.shape[:2])
