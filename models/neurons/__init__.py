"""Multi-step LIF/IF neurons: the only place where neuron dynamics are written.

Backends: ``numba`` (fused CPU kernels), ``torch`` (PyTorch operations, CPU and GPU; the
fallback), ``triton`` (fused GPU kernels; on the CPU under ``TRITON_INTERPRET=1``),
``spikingjelly`` (the baseline) and ``auto`` (triton on CUDA, numba on the CPU).
"""

from .dynamics import NeuronSpec
from .functional import (
    BACKENDS,
    if_multistep,
    lif_multistep,
    neuron_input_grad,
    neuron_multistep,
    numba_available,
    resolve_backend,
)
from .modules import (
    ConvertedIF,
    MultiStepIF,
    MultiStepLIF,
    MultiStepNeuron,
    MultiStepQCFS,
    MultiStepReLU,
)
from .surrogate import SURROGATES

__all__ = [
    "BACKENDS",
    "SURROGATES",
    "ConvertedIF",
    "MultiStepIF",
    "MultiStepLIF",
    "MultiStepNeuron",
    "MultiStepQCFS",
    "MultiStepReLU",
    "NeuronSpec",
    "if_multistep",
    "lif_multistep",
    "neuron_input_grad",
    "neuron_multistep",
    "numba_available",
    "resolve_backend",
]
