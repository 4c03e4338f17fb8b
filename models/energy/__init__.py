"""Firing rates, synaptic operations and energy of spiking networks, per layer and per stage.

`measure_energy(model, inputs, convention=NAME)` counts, in one forward pass, every
convolution's, linear layer's and spike-matrix product's FLOPs, input firing rate, SOPs and
energy (45 nm: `E = 4.6 pJ x MACs + 0.9 pJ x SOPs`) as convention NAME counts them (`ours`, the
paper's Table 9, by default; `spikformer`, `sdt`, `syops`, `spikingjelly`: see `CONVENTIONS`);
`maxformer energy` prints them per stage.
"""

from models.energy.conventions import CONVENTIONS, Convention, get_convention
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
    "CONVENTIONS",
    "E_AC_PJ",
    "E_MAC_PJ",
    "STAGE_RULES",
    "Convention",
    "EnergyMeter",
    "EnergyReport",
    "LayerEnergy",
    "NeuronRate",
    "PartEnergy",
    "get_convention",
    "measure_energy",
    "stage_firing_rates",
    "stage_of",
]
