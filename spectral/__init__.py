"""Low-pass behaviour of spiking networks: neuron frequency responses and feature spectra.

Depends on numpy, scipy and torch only; works on any tensors and ``nn.Module``.
"""

from .feature import delta_log_amplitude, high_frequency_ratio, is_binary, radial_profile
from .neuron import (
    cascade_transfer,
    estimate_transfer_welch,
    lif_cutoff,
    measure_neuron_response,
    neuron_transfer,
)
from .probe import LayerSpectrum, SpectrumProbe

__all__ = [
    "LayerSpectrum",
    "SpectrumProbe",
    "cascade_transfer",
    "delta_log_amplitude",
    "estimate_transfer_welch",
    "high_frequency_ratio",
    "is_binary",
    "lif_cutoff",
    "measure_neuron_response",
    "neuron_transfer",
    "radial_profile",
]
