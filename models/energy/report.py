"""The energy report: per-layer counts, their sums per stage and part, a table and JSON.

Energy (45 nm, as in the paper and its peers): `E = 4.6 pJ x MACs + 0.9 pJ x SOPs`, with the
pJ of the convention that counted (`models.energy.conventions`). All counts are per image. The
ANN counterpart of a network is the same network with real values instead of spikes, run
once: `E_ANN = 4.6 pJ x sum of every layer's FLOPs of one step`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.energy.conventions import Convention

E_MAC_PJ = 4.6
"""Energy of one multiply-accumulate (32-bit float, 45 nm), in picojoules."""
E_AC_PJ = 0.9
"""Energy of one accumulate (a synaptic operation), in picojoules."""

STAGE_RULES: tuple[tuple[str, str, str], ...] = (
    (r"patch_embed(\d+)\.", r"stage \1", "patch embedding"),
    (r"stage(\d+)\.\d+\.(?:mixer|attn)\.", r"stage \1", "token mixer"),
    (r"stage(\d+)\.\d+\.mlp\.", r"stage \1", "MLP"),
    (r"patch_embed\.", "stage 1", "patch embedding"),
    (r"block\.\d+\.attn\.", "stage 1", "token mixer"),
    (r"block\.\d+\.mlp\.", "stage 1", "MLP"),
    (r"layer(\d+)\.", r"stage \1", "blocks"),
    (r"(?:conv1|bn1)\.", "stem", "stem"),
    (r"(?:head|head_lif|global_pool|fc1|spike)\.", "classifier", "classifier"),
)
"""Stage and part of a layer from its name: (regular expression matched at the start of
`name + "."`, stage (may refer to groups), part). The first match wins; no match: "other"."""


def stage_of(name: str) -> tuple[str, str]:
    """`(stage, part)` of the layer called `name`, e.g. `"patch_embed2.lif1"` -> `("stage 2",
    "patch embedding")`, by the first matching rule of `STAGE_RULES`."""
    for pattern, stage, part in STAGE_RULES:
        match = re.match(pattern, name + ".")
        if match:
            return match.expand(stage), part
    return "other", "other"


@dataclass(frozen=True)
class LayerEnergy:
    """One counted operation of the network (a layer, or a spike-matrix product), per image.

    `flops`: multiply-accumulates of one time step. `ops`: of all steps it ran (`T x flops`
    for a layer that runs every step), `spike_ops` of them on spike input. `counted_as`: "MAC"
    (real-valued input), "AC" (spike input) or "mixed" (both, over several batches).
    `input_rate`: firing rate of the spike input (None when it never had one);
    `sops = input_rate x spike_ops`. `macs`: the other ops, counted once instead of T times
    when the real-valued input was the same at every step (a static image); all as the
    report's convention counts them. `energy_mj`: of `macs` and `sops` at its pJ.
    """

    name: str
    kind: str
    counted_as: str
    flops: float
    ops: float
    spike_ops: float
    input_rate: float | None
    sops: float
    macs: float
    stage: str
    part: str
    energy_mj: float


@dataclass(frozen=True)
class NeuronRate:
    """Firing rate of one neuron layer: `rate = spikes / size`, `size` = neurons x steps per
    image."""

    name: str
    rate: float
    size: float
    stage: str
    part: str


@dataclass(frozen=True)
class PartEnergy:
    """Sums over the layers of one part of a stage (e.g. stage 2's token mixer), per image."""

    stage: str
    part: str
    flops: float
    macs: float
    sops: float
    input_rate: float | None
    energy_mj: float


def _sum_part(stage: str, part: str, layers: list[LayerEnergy]) -> PartEnergy:
    spike_ops = sum(layer.spike_ops for layer in layers)
    sops = sum(layer.sops for layer in layers)
    return PartEnergy(
        stage=stage,
        part=part,
        flops=sum(layer.flops for layer in layers),
        macs=sum(layer.macs for layer in layers),
        sops=sops,
        input_rate=sops / spike_ops if spike_ops else None,
        energy_mj=sum(layer.energy_mj for layer in layers),
    )


def _grouped(items: list[Any], key: Any) -> dict[Any, list[Any]]:
    groups: dict[Any, list[Any]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


@dataclass(frozen=True)
class EnergyReport:
    """Counts of a network over the images it saw, per image, by `convention`; layers in
    forward order."""

    T: int
    images: int
    params: int
    layers: list[LayerEnergy]
    neurons: list[NeuronRate]
    convention: Convention

    @property
    def flops(self) -> float:
        return sum(layer.flops for layer in self.layers)

    @property
    def macs(self) -> float:
        return sum(layer.macs for layer in self.layers)

    @property
    def sops(self) -> float:
        return sum(layer.sops for layer in self.layers)

    @property
    def energy_mj(self) -> float:
        return sum(layer.energy_mj for layer in self.layers)

    @property
    def ann_energy_mj(self) -> float:
        """The same network as an ANN, run once: 4.6 pJ x the FLOPs of one step."""
        return self.convention.energy_mj(self.flops, 0.0)

    def parts(self) -> list[PartEnergy]:
        """Sums per (stage, part), stages and parts in the order their first layer ran."""
        groups = _grouped(self.layers, lambda layer: (layer.stage, layer.part))
        by_stage = _grouped(list(groups), lambda key: key[0])
        return [
            _sum_part(stage, part, groups[(stage, part)])
            for stage, keys in by_stage.items()
            for _, part in keys
        ]

    def stage_firing_rates(self) -> dict[str, float]:
        """Mean firing rate of all neurons of each stage (spikes / neuron-steps)."""
        groups = _grouped(self.neurons, lambda neuron: neuron.stage)
        return {
            stage: sum(n.rate * n.size for n in group) / sum(n.size for n in group)
            for stage, group in groups.items()
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain-container form (for JSON): totals, `layers`, `stages` and `neurons`."""
        stages = [
            {
                "stage": stage,
                "energy_mj": sum(p.energy_mj for p in parts),
                "parts": [asdict(p) for p in parts],
            }
            for stage, parts in _grouped(self.parts(), lambda p: p.stage).items()
        ]
        return {
            "T": self.T,
            "images": self.images,
            "params": self.params,
            "flops": self.flops,
            "macs": self.macs,
            "sops": self.sops,
            "energy_mj": self.energy_mj,
            "ann_energy_mj": self.ann_energy_mj,
            "convention": self.convention.name,
            "convention_rules": {"source": self.convention.source, **self.convention.rules},
            "energy_pj": {"mac": self.convention.e_mac_pj, "ac": self.convention.e_ac_pj},
            "stage_firing_rates": self.stage_firing_rates(),
            "layers": [asdict(layer) for layer in self.layers],
            "stages": stages,
            "neurons": [asdict(neuron) for neuron in self.neurons],
        }

    def table(self, title: str = "") -> str:
        """Per-stage table in the paper's form: each stage's parts, then the total. Counts and
        energies are shown in the units (G/M/K, mJ/uJ/nJ/pJ) that show the largest figure of
        their column with an integer part; ``title`` is the table's first line."""
        parts = self.parts()
        count_units = {
            name: _unit(max([getattr(p, name) for p in parts] + [getattr(self, name)]),
                        COUNT_UNITS)
            for name in ("flops", "macs", "sops")
        }
        energy_unit = _unit(max([p.energy_mj for p in parts] + [self.energy_mj]), ENERGY_UNITS)
        ann_unit = _unit(self.ann_energy_mj, ENERGY_UNITS)

        def count(name: str, value: float) -> str:
            return f"{value / count_units[name][1]:>10.2f}"

        def energy(value: float) -> str:
            return f"{value / energy_unit[1]:>12.4f}"

        header = (
            f"{'stage':<11} {'part':<16} {'FLOPs (' + count_units['flops'][0] + ')':>10} "
            f"{'MACs (' + count_units['macs'][0] + ')':>10} "
            f"{'SOPs (' + count_units['sops'][0] + ')':>10} {'in. rate':>8} "
            f"{'energy (' + energy_unit[0] + ')':>12}"
        )
        lines = [title] if title else []
        lines += [header, "-" * len(header)]
        previous = None
        for p in parts:
            rate = "-" if p.input_rate is None else f"{p.input_rate:.4f}"
            stage = "" if p.stage == previous else p.stage
            previous = p.stage
            lines.append(
                f"{stage:<11} {p.part:<16} {count('flops', p.flops)} {count('macs', p.macs)} "
                f"{count('sops', p.sops)} {rate:>8} {energy(p.energy_mj)}"
            )
        lines.append("-" * len(header))
        lines.append(
            f"{'total':<28} {count('flops', self.flops)} {count('macs', self.macs)} "
            f"{count('sops', self.sops)} {'':>8} {energy(self.energy_mj)}"
        )
        flops_unit, flops_scale = count_units["flops"]
        lines.append(
            f"ANN counterpart ({self.convention.e_mac_pj} pJ x "
            f"{self.flops / flops_scale:.2f} {flops_unit} "
            f"FLOPs, run once): {self.ann_energy_mj / ann_unit[1]:.4f} {ann_unit[0]}"
        )
        rates = ", ".join(f"{s} {r:.4f}" for s, r in self.stage_firing_rates().items())
        lines.append(f"firing rates: {rates}")
        lines.append(f"convention: {self.convention.name}, {self.convention.summary}")
        return "\n".join(lines)


COUNT_UNITS = (("G", 1e9), ("M", 1e6), ("K", 1e3))
"""Units of operation counts, largest first."""
ENERGY_UNITS = (("mJ", 1.0), ("uJ", 1e-3), ("nJ", 1e-6), ("pJ", 1e-9))
"""Units of energy relative to a millijoule, largest first."""


def _unit(largest: float, units: tuple[tuple[str, float], ...]) -> tuple[str, float]:
    """The largest of ``units`` in which ``largest`` is at least 1 (else the smallest)."""
    return next(((name, scale) for name, scale in units if largest >= scale), units[-1])
