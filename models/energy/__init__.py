"""Firing rates, synaptic operations and energy of spiking networks, per layer and per stage.

`measure_energy(model, inputs)` counts, in one forward pass, every convolution's, linear
layer's and spike-matrix product's FLOPs, input firing rate, SOPs and energy (45 nm:
`E = 4.6 pJ x MACs + 0.9 pJ x SOPs`); `maxformer energy` prints them per stage.
"""

from models.energy.measure import EnergyMeter, measure_energy, stage_firing_rates
from models.energy.report import (
    E_AC_PJ,
    E_MAC_PJ,
    STAGE_RULES,
    EnergyReport,
    LayerEnergy,
    NeuronRate,
    PartEnergy,
    stage_of,
)

__all__ = [
    "E_AC_PJ",
    "E_MAC_PJ",
    "STAGE_RULES",
    "EnergyMeter",
    "EnergyReport",
    "LayerEnergy",
    "NeuronRate",
    "PartEnergy",
    "measure_energy",
    "stage_firing_rates",
    "stage_of",
]
