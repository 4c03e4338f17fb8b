"""Energy conventions by name: how a paper or a tool turns one forward pass into
multiply-accumulates (MACs) and accumulates (ACs, synaptic operations, SOPs), and what each costs.

`CONVENTIONS[name]` is what `EnergyMeter(..., convention=name)` counts with: the meter hands the
convention every aten call of the forward pass (`Convention.count_call`) and every module call
(`Convention.count_module`), and sums per layer the `Count`s it returns. Each convention states
its rules in `rules` (which layer counts as MAC, which firing rate multiplies which FLOPs,
whether T is included, BatchNorm, pJ per op); docs/energy.md tables them with their sources.

| name | counts |
| --- | --- |
| `ours` (default) | the paper's Table 9: rate x T x FLOPs of every spike-driven product |
| `spikformer` | Spikformer (Zhou et al., ICLR 2023) as its authors' energy code counts |
| `sdt` | the Spike-driven Transformer (Yao et al., NeurIPS 2023), its Table 1 |
| `syops` | the syops counter (github.com/iCGY96/syops-counter, 0.0.5), module by module |
| `spikingjelly` | spikingjelly 2.0's `op_counter` (`SynOpCounter`, `MACCounter`), exact |
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.energy.report import E_AC_PJ, E_MAC_PJ
from spectral import is_binary

aten = torch.ops.aten

PRODUCTS = {
    aten.mm.default: (0, 1),
    aten.addmm.default: (1, 2),
    aten.bmm.default: (0, 1),
    aten.baddbmm.default: (1, 2),
}
"""Matrix products: op -> positions of its operands A and B in `A @ B`."""

RULE_TOPICS = ("MAC", "SOP", "T", "BatchNorm", "not counted", "pJ")
"""What every convention's `rules` say, in this order."""


@dataclass(frozen=True)
class Count:
    """What one call adds to its layer, summed over the images of the batch and the steps the
    call covers. `ops`: multiply-accumulates of the dense layer; `spike_ops`: those of them on
    spike input; `sops`: accumulates counted; `macs`: multiply-accumulates counted;
    `per_step`: the call ran once per time step (its leading axis holds T x batch rows)."""

    kind: str
    ops: float
    spike_ops: float
    sops: float
    macs: float
    per_step: bool


@dataclass(frozen=True)
class Pass:
    """What a convention knows of a forward pass: time steps, images of the batch, the storages
    of the model's parameters, the classes of its neurons."""

    steps: int
    batch: int
    weights: frozenset[int]
    neuron_types: tuple[type[nn.Module], ...]

    def per_step(self, x: Tensor) -> bool:
        """Whether `x`'s leading axis holds T x batch rows (time-major `[T * B, ...]`)."""
        return x.dim() > 0 and x.shape[0] % (self.steps * self.batch) == 0

    def is_weight(self, x: object) -> bool:
        return isinstance(x, Tensor) and x.untyped_storage().data_ptr() in self.weights


def firing_rate(x: Tensor) -> float:
    """Fraction of non-zero values of `x`."""
    return int(torch.count_nonzero(x)) / x.numel()


def same_over_time(x: Tensor, T: int) -> bool:
    """Whether the `T` time slices of a time-major `x` (`[T * B, ...]`) are all identical."""
    steps = x.reshape(T, -1)
    return bool((steps == steps[:1]).all())


def is_spike_count(x: Tensor) -> bool:
    """Whether every value of `x` is a whole number >= 0 (spikes, or sums of spike maps)."""
    return bool(((x >= 0) & (x == torch.round(x))).all())


def conv_ops(x: Tensor, weight: Tensor, out: Tensor, transposed: bool) -> int:
    """Multiply-accumulates of a convolution (any dimension, groups): `out.numel() x C_in /
    groups x prod(kernel)`; transposed: `x.numel() x C_out / groups x prod(kernel)`."""
    per_element = weight.shape[1] * math.prod(weight.shape[2:])
    return (x.numel() if transposed else out.numel()) * per_element


@dataclass(frozen=True, repr=False, eq=False)
class Convention:
    """A way of counting: `name`, a one-line `summary`, its `source`, `rules` (topic of
    `RULE_TOPICS` -> text) and the energy of a MAC and of an AC in pJ. Subclasses count aten
    calls (`count_call`) or module calls (`count_module`); the base counts nothing."""

    name: str
    summary: str
    source: str
    rules: dict[str, str]
    e_mac_pj: float = E_MAC_PJ
    e_ac_pj: float = E_AC_PJ

    def __post_init__(self) -> None:
        if tuple(self.rules) != RULE_TOPICS:
            raise ValueError(
                f"rules of {self.name!r} must say {RULE_TOPICS}, got {tuple(self.rules)}"
            )

    def energy_mj(self, macs: float, sops: float) -> float:
        """Energy in millijoules of `macs` multiply-accumulates and `sops` accumulates."""
        return (self.e_mac_pj * macs + self.e_ac_pj * sops) * 1e-9

    def count_call(
        self, func: object, args: Sequence, kwargs: dict, out: object, run: Pass
    ) -> Count | None:
        """What aten call `func(*args, **kwargs) -> out` adds, or None."""
        return None

    def count_module(
        self, module: nn.Module, args: tuple, kwargs: dict, out: object, run: Pass
    ) -> list[tuple[nn.Module, Count]]:
        """What a call of `module` adds, as `(module it is booked to, count)` pairs."""
        return []

    def __repr__(self) -> str:
        return f"Convention({self.name!r})"


@dataclass
class _Product:
    """A counted aten call: `kind` (conv, linear, matmul, sum), `ops` multiply-accumulates of
    the dense layer, `bias_ops` additions of its bias, `data` its non-parameter operands."""

    kind: str
    ops: int
    bias_ops: int
    data: list[Tensor]


def _product(func: object, args: Sequence, out: object, run: Pass) -> _Product | None:
    """The convolution, matrix product or spike sum of an aten call, or None."""
    if func is aten.convolution.default:
        x, weight, bias, transposed = args[0], args[1], args[2], args[6]
        bias_ops = out.numel() if bias is not None else 0
        return _Product("conv", conv_ops(x, weight, out, transposed), bias_ops, [x])
    if func in PRODUCTS:
        a, b = (args[i] for i in PRODUCTS[func])
        data = [t for t in (a, b) if not run.is_weight(t)]
        kind = "matmul" if len(data) == 2 else "linear"
        added = args[0] if func in (aten.addmm.default, aten.baddbmm.default) else None
        bias_ops = out.numel() if run.is_weight(added) else 0
        return _Product(kind, a.numel() * b.shape[-1], bias_ops, data or [a, b])
    if func is aten.sum.dim_IntList and is_binary(args[0]):
        return _Product("sum", args[0].numel(), 0, [args[0]])
    return None


@dataclass(frozen=True, repr=False, eq=False, kw_only=True)
class RateConvention(Convention):
    """`SOPs = firing rate of the spike input x ops` (ops over all steps: T x FLOPs) for
    convolutions, linear layers, products of two activations and sums of spikes (`kinds`);
    a layer without spike input counts its ops as MACs.

    `static_once`: a real-valued input equal at every step (a static image repeated T times)
    counts its MACs once, not T times. `spike_counts`: an input of whole numbers (Spikformer's
    sums of spike maps) counts as spikes, each value that many accumulates (rate = its mean).
    `bias`: bias additions count with their layer. `pair`: a product of two spike operands is
    gated by the left one ("left") or by the sparser one ("min").
    """

    kinds: tuple[str, ...]
    static_once: bool
    spike_counts: bool
    bias: bool
    pair: str

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pair not in ("left", "min"):
            raise ValueError(f"pair must be 'left' or 'min', got {self.pair!r}")

    def _rate(self, data: list[Tensor]) -> float | None:
        """Firing rate gating the accumulations of a call on `data`, None for MACs."""
        spikes = [is_binary(t) for t in data]
        if len(data) == 2 and self.pair == "min" and all(spikes):
            return min(firing_rate(t) for t in data)
        if any(spikes):
            return firing_rate(data[spikes.index(True)])
        if len(data) == 1 and self.spike_counts and is_spike_count(data[0]):
            return float(data[0].sum(dtype=torch.float64)) / data[0].numel()
        return None

    def count_call(self, func, args, kwargs, out, run):
        product = _product(func, args, out, run)
        if product is None or product.kind not in self.kinds:
            return None
        per_step = run.per_step(product.data[0])
        ops = product.ops + (product.bias_ops if self.bias else 0)
        rate = self._rate(product.data)
        if rate is not None:
            return Count(product.kind, ops, ops, ops * rate, 0.0, per_step)
        static = self.static_once and per_step and run.steps > 1 and all(
            same_over_time(x, run.steps) for x in product.data
        )
        return Count(product.kind, ops, 0.0, 0.0, ops / run.steps if static else ops, per_step)


def _exact_conv_sops(args: Sequence, out: Tensor) -> float:
    """Weight uses of a convolution with a spike operand, one per (one, weight) pair that
    meets inside the input: taps on zero padding are not counted; spike x spike counts pairs
    of ones."""
    x, weight, _, stride, padding, dilation, transposed, output_padding, groups = args[:9]
    x_spikes, w_spikes = is_binary(x), is_binary(weight)
    if x_spikes and w_spikes:
        return float(aten.convolution.default(
            x.double(), weight.double(), None, stride, padding, dilation, transposed,
            output_padding, groups).sum())
    if x_spikes and transposed:
        return float(aten.convolution.default(
            x.float(), torch.ones_like(weight, dtype=torch.float32), None, stride, padding,
            dilation, True, output_padding, groups).sum(dtype=torch.float64))
    if x_spikes:
        taps = torch.ones((groups, *weight.shape[1:]), dtype=torch.float32, device=x.device)
        ones_seen = aten.convolution.default(
            x.float(), taps, None, stride, padding, dilation, False, [0] * len(stride), groups)
        return float(ones_seen.sum(dtype=torch.float64)) * (weight.shape[0] // groups)
    positions = x if transposed else out
    return float(torch.count_nonzero(weight)) * positions.shape[0] * math.prod(
        positions.shape[2:])


def _exact_product_sops(func: object, args: Sequence, kwargs: dict) -> float:
    """Accumulates of a matrix product with a spike operand: a spike x value product adds a
    row (column) per one; spike x spike counts the pairs of ones that meet."""
    a, b = (args[i] for i in PRODUCTS[func])
    a_spikes, b_spikes = is_binary(a), is_binary(b)
    if a_spikes and b_spikes:
        return float((a.double() @ b.double()).sum())
    if kwargs.get("alpha", 1) != 1:
        return 0.0
    if a_spikes:
        return float(torch.count_nonzero(a)) * b.shape[-1]
    if b_spikes:
        return float(torch.count_nonzero(b)) * a.shape[-2]
    return 0.0


class SpikingJellyConvention(Convention):
    """spikingjelly 2.0's `op_counter`: SOPs as its `SynOpCounter`, MACs as its `MACCounter`,
    call by call (convolutions, `mm`, `addmm`, `bmm`, `baddbmm`, `native_batch_norm`)."""

    def count_call(self, func, args, kwargs, out, run):
        if func is aten.native_batch_norm.default:
            x, weight, running_mean, training = args[0], args[1], args[3], args[5]
            macs = (x.numel() if weight is not None else 0) + (
                2 * x.shape[1] if training and running_mean is not None else 0)
            return Count("batch_norm", x.numel(), 0.0, 0.0, float(macs), run.per_step(x))
        if func is aten.convolution.default:
            x, weight = args[0], args[1]
            kind, ops, operands = "conv", conv_ops(x, weight, out, args[6]), (x, weight)
        elif func in PRODUCTS:
            x, weight = (args[i] for i in PRODUCTS[func])
            kind = "linear" if run.is_weight(x) or run.is_weight(weight) else "matmul"
            ops, operands = x.numel() * weight.shape[-1], (x, weight)
        else:
            return None
        per_step = run.per_step(x)
        if not any(is_binary(t) for t in operands):
            return Count(kind, ops, 0.0, 0.0, float(ops), per_step)
        sops = (_exact_conv_sops(args, out) if kind == "conv"
                else _exact_product_sops(func, args, kwargs))
        return Count(kind, ops, ops, sops, 0.0, per_step)


def syops_spike_rate(x: Tensor) -> float | None:
    """syops' test of a spike tensor: at most two distinct values, all in [0, 1]; then its
    mean is the rate. None when `x` is not spikes by that test."""
    values = torch.unique(x)
    if len(values) <= 2 and float(values.max()) <= 1 and float(values.min()) >= 0:
        return float(x.sum(dtype=torch.float64)) / x.numel()
    return None


_SYOPS_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                nn.ConvTranspose3d)
_SYOPS_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d,
                nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm)
_SYOPS_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d,
                nn.AvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
                nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_SYOPS_ACTIVATIONS = (nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6, nn.GELU)


class SyopsConvention(Convention):
    """syops 0.0.5: one count per call of a module of exactly one of its types (`type(m) in`
    its table, as syops matches), from the module's input and output; neurons are the meter's
    neuron classes (syops': spikingjelly's LIF/IF nodes). A BatchNorm handed to a neuron as
    `norm` is counted as if called on its own."""

    def count_module(self, module, args, kwargs, out, run):
        if not args or not isinstance(args[0], Tensor):
            return []
        x = args[0]
        if isinstance(module, run.neuron_types):
            norm = kwargs.get("norm")
            counts = [] if norm is None else self.count_module(norm, (x.flatten(0, 1),), {},
                                                               None, run)
            neuron = Count("neuron", x.numel(), x.numel(), x.numel(), 0.0, run.per_step(x))
            return [*counts, (module, neuron)]
        kind = type(module)
        if kind in _SYOPS_CONVS:
            positions = out.shape[0] * math.prod(out.shape[2:])
            ops = math.prod(module.kernel_size) * module.in_channels * (
                module.out_channels // module.groups) * positions
            ops += module.out_channels * positions if module.bias is not None else 0
            return [(module, self._count("conv", ops, syops_spike_rate(x), run.per_step(x)))]
        if kind is nn.Linear:
            ops = x.numel() * out.shape[-1] + (out.shape[-1] if module.bias is not None else 0)
            return [(module, self._count("linear", ops, syops_spike_rate(x), run.per_step(x)))]
        if kind in _SYOPS_NORMS:
            ops = x.numel() * (2 if module.affine else 1)
            return [(module, self._count("norm", ops, syops_spike_rate(x), run.per_step(x)))]
        if kind in _SYOPS_POOLS:
            return [(module, self._count("pool", x.numel(), syops_spike_rate(x),
                                         run.per_step(x)))]
        if kind in _SYOPS_ACTIVATIONS:
            return [(module, self._count("activation", out.numel(), syops_spike_rate(out[0]),
                                         run.per_step(out)))]
        if kind is nn.Upsample:
            return [(module, self._count("upsample", out[0].numel(), syops_spike_rate(out[0]),
                                         run.per_step(out)))]
        return []

    @staticmethod
    def _count(kind: str, ops: int, rate: float | None, per_step: bool) -> Count:
        """ACs `ops x rate` on spike input, else MACs `ops`."""
        if rate is None:
            return Count(kind, ops, 0.0, 0.0, float(ops), per_step)
        return Count(kind, ops, ops, ops * rate, 0.0, per_step)


PJ_45NM = "4.6 per MAC, 0.9 per AC (32-bit float, 45 nm; Horowitz, ISSCC 2014)"

CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in (
        RateConvention(
            name="ours",
            summary="the Max-Former paper's Table 9 (default)",
            source="Max-Former paper, Table 9; shared/design.md 'Energy convention'",
            kinds=("conv", "linear", "matmul", "sum"), static_once=True, spike_counts=False,
            bias=False, pair="left",
            rules={
                "MAC": "a convolution, linear layer or product whose input is not 0/1 spikes "
                       "(the first layer on pixels, the classifier on time-averaged features); "
                       "a static image repeated over T counts once, event frames T times",
                "SOP": "firing rate of the layer's spike input x T x FLOPs, for convolutions, "
                       "linear layers, products of two activations (rate of the left spike "
                       "operand) and sums of spike tensors (one per element)",
                "T": "in SOPs (rate x T x FLOPs) and for event input; not for a static image",
                "BatchNorm": "folded into the convolution before it: not counted",
                "not counted": "neurons, biases, pooling, means, element-wise masks, "
                               "residual additions",
                "pJ": PJ_45NM,
            },
        ),
        RateConvention(
            name="spikformer",
            summary="Spikformer (Zhou et al., ICLR 2023) as its authors' energy code counts",
            source="Zhou et al., Spikformer, ICLR 2023, appendix; the code its first author "
                   "points to (ZK-Zhou/spikformer issue #16): zhouchenlin2096/Spikingformer "
                   "energy_consumption_calculation (syops-based, get_energy_cost)",
            kinds=("conv", "linear", "matmul"), static_once=False, spike_counts=True,
            bias=True, pair="min",
            rules={
                "MAC": "a convolution or linear layer whose input is real-valued, at every "
                       "step it runs: the first convolution T times on the repeated image, "
                       "the head once on time-averaged features; bias additions included",
                "SOP": "mean of the layer's input x T x (FLOPs + bias additions); an input of "
                       "whole numbers (Spikformer's sums of spike maps) counts each value as "
                       "that many accumulates (that code's 'calculation 1', Nspks_max = 30; "
                       "its default, Nspks_max = 1, would make those layers MACs); SSA's K^T V "
                       "counts min(rate K, rate V) x T x h N d^2, Q (K^T V) rate Q x T x "
                       "h N d^2",
                "T": "in SOPs and in the MACs of the first convolution",
                "BatchNorm": "not counted (folded)",
                "not counted": "neurons, pooling, sums, element-wise products, residual "
                               "additions",
                "pJ": PJ_45NM,
            },
        ),
        RateConvention(
            name="sdt",
            summary="the Spike-driven Transformer (Yao et al., NeurIPS 2023), its Table 1",
            source="Yao et al., Spike-driven Transformer, NeurIPS 2023, Table 1 and "
                   "supplementary Eqs. S1-S2",
            kinds=("conv", "linear", "matmul", "sum"), static_once=False, spike_counts=False,
            bias=False, pair="left",
            rules={
                "MAC": "the first convolution (encoding layer) on real-valued input: "
                       "E_MAC x T x FL_Conv, T times even for a static image",
                "SOP": "R x T x FLOPs for every other convolution and linear layer (R the "
                       "firing rate of its spike input); SDSA's column sum of K*V counts "
                       "R~ x T x N x D, R~ the firing rate of K*V",
                "T": "in every term, the first layer's MACs included",
                "BatchNorm": "folded into the convolution before it: not counted",
                "not counted": "neurons, biases, pooling, masks (Hadamard products), "
                               "residual additions",
                "pJ": PJ_45NM,
            },
        ),
        SyopsConvention(
            name="syops",
            summary="the syops counter (iCGY96/syops-counter 0.0.5), module by module",
            source="github.com/iCGY96/syops-counter, syops 0.0.5 (syops/ops.py, README "
                   "Benchmark)",
            rules={
                "MAC": "a counted module whose input is not spikes by syops' test (at most "
                       "two distinct values, all in [0, 1]): its ops, at every call",
                "SOP": "ops x mean of the input for a counted module on spikes; a neuron "
                       "counts one AC per input element whatever its rate",
                "T": "layers on [T * B] batches count T times (per image: divided by the "
                     "batch)",
                "BatchNorm": "counted: 2 ops per element when affine (1 otherwise)",
                "not counted": "products of two activations, sums, element-wise products, "
                               "LayerNorm, modules outside syops' table",
                "pJ": PJ_45NM + " (syops README)",
            },
        ),
        SpikingJellyConvention(
            name="spikingjelly",
            summary="spikingjelly 2.0's op_counter: SynOpCounter SOPs, MACCounter MACs, exact",
            source="spikingjelly 2.0, spikingjelly/activation_based/op_counter (synop.py, "
                   "ac.py, mac.py); pJ of its SimpleEnergyCostConfig.fp32",
            rules={
                "MAC": "a convolution or matrix product with no 0/1 operand: all its "
                       "multiply-accumulates, at every call; an affine BatchNorm: one per "
                       "element",
                "SOP": "exact: one per (spike, weight) pair that meets, taps on zero padding "
                       "skipped; spike x spike products count the pairs of ones",
                "T": "every step's spikes are counted as they are",
                "BatchNorm": "counted as MACs (affine: one per element; training: + 2 per "
                             "channel)",
                "not counted": "element-wise additions, reductions and memory traffic (its "
                               "ACCounter and SimpleEnergyProfiler add them)",
                "pJ": PJ_45NM,
            },
        ),
    )
}
"""Every convention by name; `ours` is the default."""


def get_convention(name: str | Convention) -> Convention:
    """The convention called `name` (a key of `CONVENTIONS`), or `name` itself if it is one."""
    if isinstance(name, Convention):
        return name
    if name not in CONVENTIONS:
        raise ValueError(
            f"unknown energy convention {name!r}; valid: {', '.join(CONVENTIONS)}"
        )
    return CONVENTIONS[name]
