"""Conversion of a ReLU- or QCFS-trained zoo network into an IF network.

Every ANN activation (ReLU or QCFS) becomes a :class:`models.neurons.ConvertedIF` (spikes
0/1; the layers reading them take its threshold into their weights) whose threshold is the
activation's scale: the `percentile` of its positive outputs on calibration
images (robust normalisation, Rueckauer et al. 2017, spikingjelly's `ann2snn`) for ReLU, the
trained clip lambda for QCFS (Bu et al. 2022). Max-pooling, which these networks apply to
membrane inputs at every step, becomes :class:`GatedMaxPool` (the max of rates, not the rate
of maxima). Spiking self-attention and QK-attention multiply two spike tensors, which rates do
not preserve: they are refused by name, as is a head that max-pools.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.layers.mixers import SpikingSelfAttention, TokenQKAttention
from models.neurons import ConvertedIF, MultiStepNeuron, MultiStepQCFS, MultiStepReLU

ACTIVATIONS = (MultiStepReLU, MultiStepQCFS)
"""The ANN activations conversion replaces by IF neurons."""

REFUSED = (SpikingSelfAttention, TokenQKAttention)
"""Layers without a rate-preserving IF counterpart (products of two spike tensors)."""

MAX_SAMPLES = 1 << 20
"""Positive outputs per layer and batch kept for the percentile (evenly strided)."""


class ConversionError(ValueError):
    """A network that cannot be converted; the message is one line."""


class TimeSteps:
    """The number of time steps of the current call, told by the network's IF neurons to its
    gated max-pools (which see frames `[T * B, ...]`)."""

    def __init__(self) -> None:
        self.steps: int | None = None

    def tick(self, module: nn.Module, args: tuple) -> None:
        self.steps = args[0].shape[0]


class GatedMaxPool(nn.Module):
    """Max-pooling of membrane inputs by accumulated input (Rueckauer et al. 2017's gated
    max-pool): at each step each window passes the input of the position whose input summed
    since the start is largest, so the time average tends to the max of the time averages,
    the ANN's max-pool. Frames `[T * B, C, H, W] -> [T * B, C, H', W']`.

    The sums are float64, added in time order, so a run in chunks whose sums go on from the
    previous call (while `carry` is set; `state`, `[B, C, H, W]`) picks the positions of one
    call at all steps. They only choose positions: no gradient flows through them."""

    def __init__(self, pool: nn.MaxPool2d, clock: TimeSteps) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = pool.kernel_size, pool.stride, pool.padding
        self.clock = clock
        self.carry = False
        self.state: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.clock.steps is None:
            raise RuntimeError("GatedMaxPool runs after an IF neuron of its network, which "
                               "tells it the number of time steps")
        frames = x.detach().unflatten(0, (self.clock.steps, -1)).to(torch.float64)
        if self.carry and self.state is not None:  # the sums of one call at all steps
            frames = torch.cat([(self.state + frames[0])[None], frames[1:]])
        total = frames.cumsum(0)
        _, index = F.max_pool2d(total.flatten(0, 1), self.kernel_size, self.stride,
                                self.padding, return_indices=True)
        if self.carry:
            self.state = total[-1].clone()  # not a view: the sums of every step go
        return x.flatten(2).gather(2, index.flatten(2)).view_as(index)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def _refuse_layers(model: nn.Module) -> None:
    """Raise a one-line :class:`ConversionError` naming the first layer conversion cannot
    keep: products of two spike tensors, or a head that max-pools."""
    for name, module in model.named_modules():
        if isinstance(module, REFUSED):
            raise ConversionError(
                f"cannot convert {name} ({type(module).__name__}): it multiplies two spike "
                "tensors, which firing rates do not preserve; convertible mixers: identity, "
                "max_pool, avg_pool, dwc3, dwc5, dwc7"
            )
    pool = getattr(model, "global_pool", None)
    if pool is not None and getattr(pool, "pool_type", "avg") not in ("avg", ""):
        raise ConversionError(
            f"cannot convert global_pool {pool.pool_type!r}: a head that max-pools rates is "
            "not kept; valid: 'avg'"
        )


def check_convertible(model: nn.Module) -> None:
    """Raise a one-line :class:`ConversionError` unless `model` is an ANN twin (neuron "relu"
    or "qcfs") made of layers conversion keeps."""
    _refuse_layers(model)
    for name, module in model.named_modules():
        if isinstance(module, MultiStepNeuron):
            raise ConversionError(
                f"cannot convert {name} ({type(module).__name__}): the network is spiking "
                "already; convert its ANN twin (neuron relu or qcfs)"
            )
    if not any(isinstance(m, ACTIVATIONS) for m in model.modules()):
        raise ConversionError(
            f"cannot convert {type(model).__name__}: it has no ReLU or QCFS activation of the "
            "zoo (build it with neuron relu or qcfs)"
        )


def _replace(model: nn.Module, old: type | tuple[type, ...], make) -> None:
    """Replace every submodule of class `old` by `make(module)`, in place."""
    for name, module in list(model.named_modules()):
        if isinstance(module, old):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, make(module))


def gate_max_pools(model: nn.Module) -> nn.Module:
    """`model`, a network of :class:`models.neurons.ConvertedIF` neurons (changed in place and
    returned), with :class:`GatedMaxPool` in place of its max-pools; layers conversion
    cannot keep are refused. The zoo applies it to the models it builds with neuron
    "if_converted", the structure a converted checkpoint loads into strictly."""
    _refuse_layers(model)
    clock = TimeSteps()
    for module in model.modules():
        if isinstance(module, ConvertedIF):
            module.register_forward_pre_hook(clock.tick)
    _replace(model, nn.MaxPool2d, lambda module: GatedMaxPool(module, clock))
    return model


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def calibrate_thresholds(
    model: nn.Module, images: Iterable[Tensor], percentile: float = 99.9
) -> dict[str, float]:
    """The `percentile` (in (0, 100]) of the positive outputs of every ReLU of `model` (in
    eval mode) on the batches `images` (`[B, C, H, W]`), by module name; 1.0 for a ReLU that
    never gives a positive output."""
    if not 0.0 < percentile <= 100.0:
        raise ConversionError(f"percentile must be in (0, 100], got {percentile}")
    found: dict[str, list[Tensor]] = {}

    def keep(name: str):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            positive = output[output > 0].float().flatten()
            step = max(1, positive.numel() // MAX_SAMPLES)
            found.setdefault(name, []).append(positive[::step].cpu())
        return hook

    handles = [m.register_forward_hook(keep(n)) for n, m in model.named_modules()
               if isinstance(m, MultiStepReLU)]
    was_training = model.training
    model.eval()
    try:
        for batch in images:
            model(batch.to(_device(model)))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    thresholds = {}
    for name, parts in found.items():
        values = torch.cat(parts)
        if values.numel() == 0:
            thresholds[name] = 1.0
            continue
        rank = max(1, min(values.numel(), round(percentile / 100.0 * values.numel())))
        thresholds[name] = float(values.kthvalue(rank).values)
    return thresholds


def convert(
    ann: nn.Module,
    images: Iterable[Tensor] | None = None,
    percentile: float = 99.9,
    backend: str = "auto",
) -> nn.Module:
    """The IF network converted from `ann` (a zoo model built with neuron "relu" or "qcfs";
    left as it is), in eval mode. A ReLU network's thresholds are the `percentile` of each
    layer's positive activations on `images` (batches `[B, C, H, W]` of training images); a
    QCFS network's are its trained clips. Run it at T steps by setting `T`, or in chunks with
    :func:`models.conversion.forward_in_chunks`."""
    check_convertible(ann)
    relu = any(isinstance(m, MultiStepReLU) for m in ann.modules())
    if relu and images is None:
        raise ConversionError("converting a ReLU network needs calibration images")
    if relu:
        thresholds = calibrate_thresholds(ann, images, percentile)
    else:
        thresholds = {}
    for name, module in ann.named_modules():
        if isinstance(module, MultiStepQCFS):
            thresholds[name] = float(module.threshold.detach())
    snn = copy.deepcopy(ann).eval()
    _replace(snn, ACTIVATIONS, lambda module: ConvertedIF(backend=backend).to(_device(ann)))
    if hasattr(snn, "neuron"):
        snn.neuron = "if_converted"
    gate_max_pools(snn)
    with torch.no_grad():
        for name, readers in _readers(snn).items():
            snn.get_submodule(name).threshold.fill_(thresholds[name])
            for reader in readers:
                snn.get_submodule(reader).weight.mul_(thresholds[name])
    return snn


WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)
"""The layers that read spikes (and take their neuron's threshold into their weights)."""


@torch.no_grad()
def _readers(snn: nn.Module) -> dict[str, list[str]]:
    """The weighted layers that read each IF neuron's spikes, by name, found by replacing the
    neuron's output with positive values `R`, then `2 R`: a reader's input doubles exactly
    (the layers between, pooling and means over time or space, are linear). One-line
    :class:`ConversionError` for a neuron without readers or a layer that reads several."""
    weighted = {n: m for n, m in snn.named_modules() if isinstance(m, WEIGHTED)}
    neurons = [n for n, m in snn.named_modules() if isinstance(m, ConvertedIF)]
    side = 2 * getattr(snn, "stride", 4)
    weight = next(snn.parameters())
    probe = torch.zeros(1, snn.in_chans, side, side, device=weight.device, dtype=weight.dtype)

    def inputs(neuron: str, factor: float) -> dict[str, Tensor]:
        seen: dict[str, Tensor] = {}
        generator = torch.Generator().manual_seed(0)

        def replace(module: nn.Module, args: tuple, out: Tensor) -> Tensor:
            return factor * (0.5 + torch.rand(out.shape, generator=generator, dtype=out.dtype)
                             ).to(out.device)

        handles = [m.register_forward_pre_hook(
            lambda module, args, key=k: seen.__setitem__(key, args[0].clone()))
            for k, m in weighted.items()]
        handles.append(snn.get_submodule(neuron).register_forward_hook(replace))
        steps_before, snn.T = snn.T, 1
        try:
            snn(probe)
        finally:
            snn.T = steps_before
            for handle in handles:
                handle.remove()
        return seen

    readers, owner = {}, {}
    for neuron in neurons:
        once, twice = inputs(neuron, 1.0), inputs(neuron, 2.0)
        readers[neuron] = [k for k, x in once.items()
                           if bool(x.any()) and torch.equal(twice[k], 2 * x)]
        if not readers[neuron]:
            raise ConversionError(f"cannot convert {neuron}: no convolution or linear layer "
                                  "reads its spikes directly")
        for reader in readers[neuron]:
            if reader in owner:
                raise ConversionError(f"cannot convert {reader}: it reads the spikes of "
                                      f"{owner[reader]} and {neuron}")
            owner[reader] = neuron
    return readers
