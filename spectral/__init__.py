"""Low-pass behaviour of spiking networks: neuron frequency responses, feature spectra, the
temporal transfer through a network's layers (`temporal`) and what spatial frequencies cost
its decisions (`fourier`).

Depends on numpy, scipy and torch only; works on any tensors and ``nn.Module``.
"""

import importlib
from typing import Any

# Each name is imported from its module on first use, so a program that needs one measure
# does not pay for the others' imports (scipy.signal alone takes seconds).
_MODULES = {
    "feature": (
        "DIAGONAL_EPSILON",
        "METHODS",
        "Spectrum",
        "SpectrumAccumulator",
        "delta_log_amplitude",
        "high_frequency_ratio",
        "is_binary",
        "radial_profile",
    ),
    "fourier": (
        "FourierHeatMap",
        "band_mask",
        "band_noise",
        "band_noise_accuracy",
        "centred_frequencies",
        "fourier_basis",
        "fourier_heat_map",
        "gradient_spectrum",
        "heat_map_radius",
    ),
    "neuron": (
        "cascade_transfer",
        "estimate_transfer_welch",
        "lif_cutoff",
        "measure_neuron_response",
        "neuron_transfer",
    ),
    "probe": (
        "LayerSpectrum",
        "SpectrumProbe",
        "first_tensor",
        "is_spiking_neuron",
        "time_major",
    ),
    "temporal": (
        "LayerTransfer",
        "check_omegas",
        "predicted_gain_db",
        "spike_train_spectrum",
        "temporal_transfer",
    ),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'spectral' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
