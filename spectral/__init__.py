"""Low-pass behaviour of spiking networks: neuron frequency responses, feature spectra, the
temporal transfer through a network's layers (`temporal`) and what spatial frequencies cost
its decisions (`fourier`).

Depends on numpy, scipy and torch only; works on any tensors and ``nn.Module``.
"""

from .feature import (
    DIAGONAL_EPSILON,
    METHODS,
    Spectrum,
    SpectrumAccumulator,
    delta_log_amplitude,
    high_frequency_ratio,
    is_binary,
    radial_profile,
)
from .fourier import (
    FourierHeatMap,
    band_mask,
    band_noise,
    band_noise_accuracy,
    centred_frequencies,
    fourier_basis,
    fourier_heat_map,
    gradient_spectrum,
)
from .neuron import (
    cascade_transfer,
    estimate_transfer_welch,
    lif_cutoff,
    measure_neuron_response,
    neuron_transfer,
)
from .probe import LayerSpectrum, SpectrumProbe, first_tensor, is_spiking_neuron, time_major
from .temporal import (
    LayerTransfer,
    check_omegas,
    predicted_gain_db,
    spike_train_spectrum,
    temporal_transfer,
)

__all__ = [
    "FourierHeatMap",
    "DIAGONAL_EPSILON",
    "METHODS",
    "LayerSpectrum",
    "LayerTransfer",
    "Spectrum",
    "SpectrumAccumulator",
    "SpectrumProbe",
    "band_mask",
    "band_noise",
    "band_noise_accuracy",
    "cascade_transfer",
    "centred_frequencies",
    "check_omegas",
    "delta_log_amplitude",
    "estimate_transfer_welch",
    "first_tensor",
    "fourier_basis",
    "fourier_heat_map",
    "gradient_spectrum",
    "high_frequency_ratio",
    "is_binary",
    "is_spiking_neuron",
    "lif_cutoff",
    "measure_neuron_response",
    "neuron_transfer",
    "predicted_gain_db",
    "radial_profile",
    "spike_train_spectrum",
    "temporal_transfer",
    "time_major",
]
