"""Multi-step LIF/IF neurons: the only place where neuron dynamics are written.

Backends: ``torch`` (CPU and GPU), ``triton`` (fused GPU kernels; on the CPU under
``TRITON_INTERPRET=1``), ``spikingjelly`` (the baseline) and ``auto``.
"""

from .dynamics import SURROGATES, NeuronSpec
from .functional import (
    BACKENDS,
    if_multistep,
    lif_multistep,
    neuron_input_grad,
    neuron_multistep,
    resolve_backend,
)
from .modules import MultiStepIF, MultiStepLIF, MultiStepNeuron, MultiStepReLU

__all__ = [
    "BACKENDS",
    "SURROGATES",
    "MultiStepIF",
    "MultiStepLIF",
    "MultiStepNeuron",
    "MultiStepReLU",
    "NeuronSpec",
    "if_multistep",
    "lif_multistep",
    "neuron_input_grad",
    "neuron_multistep",
    "resolve_backend",
]
