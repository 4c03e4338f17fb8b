"""Measurement of FLOPs, MACs, synaptic operations and firing rates in forward passes.

A `TorchDispatchMode` sees every aten operation of the forward pass and module hooks see every
module call; module hooks also tell which module runs an aten operation (the innermost one).
What is counted, and how, is the energy convention's (`models.energy.conventions`); the default,
`ours`, counts from the operands' actual shapes:

- convolutions (`aten.convolution`, any dimension, groups, transposed):
  `out.numel() x C_in / groups x prod(kernel)` (transposed: `in.numel()` instead of `out`);
- products with a weight (`mm`, `addmm`, `bmm`, `baddbmm` where one operand is a parameter of
  the model, i.e. linear layers): `M x N x K`, kind "linear";
- products of two activations (the same ops without a parameter: attention's `k^T v`,
  `q (k^T v)`, ...): `M x N x K`, kind "matmul";
- explicit sums of a spike tensor (`aten.sum` over dimensions, as in QK-attention's channel sum
  of Q), one accumulate per input element, kind "sum". Means (average pooling over space or
  time) and element-wise products (QK-attention's mask) are not counted, nor are BatchNorm
  (folded into the convolution before it), biases, residual additions and neurons.

An operand is spikes when every value is 0 or 1. An op on spikes counts as AC:
`SOPs = rate x ops`, `rate` = fraction of ones in the operand that gates the accumulations:
the data operand of a layer; for a product `A @ B` of two activations, `A` when it is spikes
(each spike of `A` adds a row of `B`), else `B`. An op without spike operand counts as MAC.
Layouts are time-major (`[T * B, ...]` or `[T, B, ...]` on the leading axis of the data
operand, as in our models and spikingjelly's multi-step mode): an op whose leading axis holds
`T x batch` rows ran once per step (`flops = ops / T`); its real-valued input, when the same at
every step (a static image repeated T times), is counted once: `MACs = flops`. Event input,
different at every step, is counted T times. An op on a batch without the time axis (our
classifier on time-averaged spikes, real values) ran once: `flops = ops`, counted as MAC.
"""

import contextlib
from collections import Counter
from dataclasses import dataclass
from types import TracebackType

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

from models.energy.conventions import Convention, Count, Pass, get_convention
from models.energy.report import EnergyReport, LayerEnergy, NeuronRate, stage_of
from models.neurons import MultiStepNeuron


@dataclass
class _LayerTally:
    """Sums over all calls of one counted operation (all images, all steps)."""

    kind: str
    ops: float = 0.0
    step_ops: float = 0.0
    spike_ops: float = 0.0
    sops: float = 0.0
    mac_ops: float = 0.0
    macs: float = 0.0

    def add(self, count: Count, steps: int) -> None:
        self.ops += count.ops
        self.step_ops += count.ops / steps if count.per_step else count.ops
        self.spike_ops += count.spike_ops
        self.sops += count.sops
        self.mac_ops += count.ops - count.spike_ops
        self.macs += count.macs


class _CountingMode(TorchDispatchMode):
    """Hands every aten call of the forward pass to the meter."""

    def __init__(self, meter: "EnergyMeter") -> None:
        super().__init__()
        self.meter = meter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.meter._record(func, args, kwargs, out)
        return out


class EnergyMeter:
    """Counts FLOPs, MACs, SOPs and firing rates of every forward pass of `model` while active.

    ```
    with EnergyMeter(model) as meter:
        for images in batches:
            model(images)
    report = meter.report()
    ```
    While active the model is in eval mode and gradients are off (both restored on exit).
    `T`: time steps; by default the length of 5-D input (clips `[B, T, C, H, W]`), else
    `model.T`.
    The batch size of a call is the first axis of the model's first argument (`time_major`:
    the second, for input `[T, B, ...]`). `neuron_types`: the classes whose outputs are
    spikes, reported with their firing rates. `convention`: how MACs and SOPs are counted, a
    name of `models.energy.conventions.CONVENTIONS` (default "ours") or a `Convention`.
    """

    def __init__(
        self,
        model: nn.Module,
        T: int | None = None,
        time_major: bool = False,
        neuron_types: tuple[type[nn.Module], ...] = (MultiStepNeuron,),
        convention: str | Convention = "ours",
    ) -> None:
        self.model = model
        self.T = T
        self.time_major = time_major
        self.neuron_types = neuron_types
        self.convention = get_convention(convention)
        self.images = 0
        self._batch = 0
        self._steps: int | None = None
        self._stack: list[tuple[str, bool, Counter]] = []
        self._layers: dict[str, _LayerTally] = {}
        self._neurons: dict[str, list[int]] = {}
        self._weights: frozenset[int] = frozenset()
        self._norms: set[int] = set()
        self._names: dict[int, str] = {}
        self._exit_stack = contextlib.ExitStack()

    def __enter__(self) -> "EnergyMeter":
        stack = self._exit_stack
        self._weights = frozenset(
            p.untyped_storage().data_ptr() for p in self.model.parameters()
        )
        training = self.model.training
        stack.callback(self.model.train, training)
        self.model.eval()
        stack.enter_context(torch.no_grad())
        stack.callback(self._stack.clear)
        stack.enter_context(_CountingMode(self))
        root = self.model.register_forward_pre_hook(self._start_batch)
        stack.callback(root.remove)
        self._names = {id(module): name for name, module in self.model.named_modules()}
        for name, module in self.model.named_modules():
            leaf = next(module.children(), None) is None
            pre = module.register_forward_pre_hook(self._enter_hook(name, leaf, module),
                                                   with_kwargs=True)
            post = module.register_forward_hook(self._exit_hook(name, module), with_kwargs=True)
            stack.callback(pre.remove)
            stack.callback(post.remove)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._exit_stack.close()

    def _start_batch(self, module: nn.Module, args: tuple) -> None:
        """Batch size and time steps of a forward pass of the model, from its first input."""
        if not args or not isinstance(args[0], Tensor):
            raise TypeError("EnergyMeter needs the model's input as its first positional argument")
        x = args[0]
        self._batch = x.shape[1] if self.time_major else x.shape[0]
        steps = self.T
        if steps is None and x.dim() == 5:  # a clip has its own length
            steps = x.shape[0] if self.time_major else x.shape[1]
        if steps is None:
            steps = getattr(self.model, "T", None)
        if steps is None:
            raise ValueError(
                f"cannot tell the number of time steps of input {tuple(x.shape)}: the model has "
                "no T and the input is not [B, T, C, H, W]; pass T"
            )
        if self._steps is not None and steps != self._steps:
            raise ValueError(f"every batch must have the same T: {steps} after {self._steps}")
        self._steps = steps
        self.images += self._batch

    def _pass(self) -> Pass:
        return Pass(self._steps, self._batch, self._weights, self.neuron_types)

    def _enter_hook(self, name: str, leaf: bool, module: nn.Module):
        is_neuron = isinstance(module, self.neuron_types)

        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            self._stack.append((name, leaf, Counter()))
            if is_neuron and kwargs.get("norm") is not None:
                self._norms.add(id(kwargs["norm"]))

        return hook

    def _exit_hook(self, name: str, module: nn.Module):
        is_neuron = isinstance(module, self.neuron_types)

        def hook(module: nn.Module, args: tuple, kwargs: dict, out: object) -> None:
            self._stack.pop()
            with _disable_current_modes():
                if is_neuron:
                    tally = self._neurons.setdefault(name, [0, 0])
                    tally[0] += int(torch.count_nonzero(out))
                    tally[1] += out.numel()
                    self._norms.discard(id(kwargs.get("norm")))
                if id(module) in self._norms:  # a neuron's norm: counted with the neuron
                    return
                for owner, count in self.convention.count_module(
                    module, args, kwargs, out, self._pass()
                ):
                    key = self._names.get(id(owner), name)
                    self._layers.setdefault(key, _LayerTally(count.kind)).add(count, self._steps)

        return hook

    def _record(self, func: object, args: tuple, kwargs: dict, out: object) -> None:
        """Count one aten call made inside the model's forward pass."""
        if not self._stack:
            return
        count = self.convention.count_call(func, args, kwargs, out, self._pass())
        if count is None:
            return
        name, leaf, counts = self._stack[-1]
        index = counts[count.kind]
        counts[count.kind] += 1
        if name and leaf and index == 0:
            key = name
        else:
            key = f"{name}.{count.kind}{index}" if name else f"{count.kind}{index}"
        self._layers.setdefault(key, _LayerTally(count.kind)).add(count, self._steps)

    def report(self) -> EnergyReport:
        """Counts per image of all forward passes so far."""
        if self.images == 0:
            raise RuntimeError("no forward pass of the model was measured")
        n = self.images
        energy = self.convention.energy_mj
        layers = [
            LayerEnergy(
                name=name,
                kind=t.kind,
                counted_as=_counted_as(t),
                flops=t.step_ops / n,
                ops=t.ops / n,
                spike_ops=t.spike_ops / n,
                input_rate=t.sops / t.spike_ops if t.spike_ops else None,
                sops=t.sops / n,
                macs=t.macs / n,
                stage=stage_of(name)[0],
                part=stage_of(name)[1],
                energy_mj=energy(t.macs / n, t.sops / n),
            )
            for name, t in self._layers.items()
        ]
        neurons = [
            NeuronRate(name, spikes / size, size / n, *stage_of(name))
            for name, (spikes, size) in self._neurons.items()
        ]
        params = sum(p.numel() for p in self.model.parameters())
        return EnergyReport(self._steps, n, params, layers, neurons, self.convention)


def _counted_as(tally: _LayerTally) -> str:
    if tally.mac_ops == 0:
        return "AC"
    return "MAC" if tally.spike_ops == 0 else "mixed"


def measure_energy(
    model: nn.Module,
    inputs: Tensor,
    T: int | None = None,
    time_major: bool = False,
    neuron_types: tuple[type[nn.Module], ...] = (MultiStepNeuron,),
    convention: str | Convention = "ours",
) -> EnergyReport:
    """FLOPs, MACs, SOPs, energy and firing rates of `model` on one batch, per image, counted
    by `convention` (a name of `models.energy.conventions.CONVENTIONS`, default "ours").

    `inputs`: images `[B, C, H, W]`, frames `[B, T, C, H, W]` (or `[T, B, ...]` with
    `time_major`). One forward pass, in eval mode without gradients; see `EnergyMeter`.
    """
    with EnergyMeter(model, T, time_major, neuron_types, convention) as meter:
        model(inputs)
    return meter.report()


def stage_firing_rates(model: nn.Module, batch: Tensor, T: int | None = None) -> dict[str, float]:
    """Mean firing rate of each stage's neurons on `batch` (one forward pass, eval mode, no
    gradients; the model's mode is restored), e.g. `{"stage 1": 0.12, ..., "classifier": 0.3}`.
    """
    return measure_energy(model, batch, T).stage_firing_rates()
