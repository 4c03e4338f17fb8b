"""What autograd keeps for backward: spike tensors in 1 bit per element, and how much is kept.

Layers that read spikes (convolutions, linear layers, spike-matrix products) save their
spike input for backward as a float tensor of 0s and 1s. Inside :func:`compact_spikes`, the
outputs of a model's neurons (every :class:`models.neurons.MultiStepNeuron`) are marked as
spikes; a saved tensor that is such an output, or a view of one, is stored as packed bits
(32x smaller than float32) and unpacked bit for bit, with its strides and alignment, when
backward needs it, so backward runs the same kernels on the same memory layout. Anything
else is kept as it is. Nothing is checked on the values, so packing never waits for the GPU.
float32 and float64 spikes on the CPU are packed by the numba kernels of
:mod:`models.spike_bits` (one pass each way), others by PyTorch operations; both write the
same bits.
:func:`mark_spikes` marks other tensors by hand.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from models.neurons import MultiStepNeuron, numba_available

MIN_ELEMENTS = 4096
"""Smaller tensors are not worth packing."""

ALIGNMENT_ELEMENTS = 64
"""An unpacked tensor starts at the same offset modulo this many elements as the original."""

_MARKED: list[dict[int, weakref.ref]] = []
"""One registry per active :func:`compact_spikes`: ``id(tensor) -> weak reference``."""

Result = TypeVar("Result")


@dataclass(frozen=True)
class PackedSpikes:
    """A 0/1 tensor stored as bits: ``bits`` ``[ceil(numel / 8)]`` uint8 (or what an outer
    saved-tensor hook made of them), and the layout to restore."""

    bits: object
    shape: torch.Size
    stride: tuple[int, ...]
    offset: int
    dtype: torch.dtype


_BIT_WEIGHTS: dict[torch.device, torch.Tensor] = {}


def _weights(device: torch.device) -> torch.Tensor:
    if device not in _BIT_WEIGHTS:
        _BIT_WEIGHTS[device] = (2 ** torch.arange(8, device=device)).to(torch.uint8)
    return _BIT_WEIGHTS[device]


def _root(x: torch.Tensor) -> torch.Tensor:
    """The tensor ``x`` is a view of (views of views share it), or ``x``."""
    return x if x._base is None else x._base


def mark_spikes(x: torch.Tensor) -> torch.Tensor:
    """Declare ``x`` a tensor of 0s and 1s (spikes): inside :func:`compact_spikes`, it and its
    views are packed when saved for backward. Returns ``x``.

    A view is marked through the tensor it views when it covers all of it (a reshape)."""
    if _MARKED:
        root = _root(x)
        target = root if root.numel() == x.numel() else x
        _MARKED[-1][id(target)] = weakref.ref(target)
    return x


def _is_marked(x: torch.Tensor, marked: dict[int, weakref.ref]) -> bool:
    """Whether ``x`` is a marked tensor or a view of one (by identity, not a reused id)."""
    for candidate in (x, _root(x)):
        ref = marked.get(id(candidate))
        if ref is not None and ref() is candidate:
            return True
    return False


def _fused(t: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether the numba kernels of :mod:`models.spike_bits` pack ``t`` (spikes of ``dtype``)."""
    return t.device.type == "cpu" and dtype in (torch.float32, torch.float64) and \
        numba_available()


def pack(x: torch.Tensor) -> PackedSpikes:
    """Bits of the 0/1 tensor ``x`` (any shape and strides), eight to a byte (element
    ``8 j + k`` of ``x`` in its logical order is bit ``k`` of byte ``j``)."""
    if _fused(x, x.dtype):
        from models.spike_bits import pack_bits

        bits = pack_bits(x.contiguous())
    else:
        flat = x.reshape(-1).to(torch.uint8)
        pad = (-flat.numel()) % 8
        if pad:
            flat = torch.cat([flat, flat.new_zeros(pad)])
        bits = (flat.view(-1, 8) * _weights(x.device)).sum(1, dtype=torch.uint8)
    offset = x.storage_offset() % ALIGNMENT_ELEMENTS
    return PackedSpikes(bits, x.shape, x.stride(), offset, x.dtype)


def unpack(packed: PackedSpikes) -> torch.Tensor:
    """The tensor that :func:`pack` packed: same values, shape, strides and offset modulo
    ``ALIGNMENT_ELEMENTS``."""
    bits = packed.bits
    steps = zip(packed.shape, packed.stride, strict=True)
    span = 1 + sum((size - 1) * step for size, step in steps) if packed.shape.numel() else 0
    storage = torch.empty(packed.offset + span, dtype=packed.dtype, device=bits.device)
    out = storage.as_strided(packed.shape, packed.stride, packed.offset)
    if _fused(bits, packed.dtype):
        from models.spike_bits import unpack_bits

        if out.is_contiguous():
            return unpack_bits(bits, out)
        return out.copy_(unpack_bits(bits, torch.empty(packed.shape, dtype=packed.dtype)))
    values = bits.unsqueeze(1).bitwise_and(_weights(bits.device)).ne(0)
    return out.copy_(values.reshape(-1)[: packed.shape.numel()].reshape(packed.shape))


def _mark_output(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
    mark_spikes(output)


@contextlib.contextmanager
def compact_spikes(model: nn.Module | None = None, enabled: bool = True) -> Iterator[None]:
    """Inside, the spikes of ``model``'s neurons (and tensors given to :func:`mark_spikes`)
    saved for backward take 1 bit per element.

    Saved-tensor hooks already active outside (a memory probe, CPU offloading) still apply:
    they receive the packed bits instead of the spike tensor.
    """
    if not enabled:
        yield
        return
    outer = torch._C._autograd._top_saved_tensors_default_hooks(False)
    outer_pack, outer_unpack = outer if outer is not None else (None, None)
    marked: dict[int, weakref.ref] = {}

    def pack_hook(x: torch.Tensor):
        if x.numel() >= MIN_ELEMENTS and _is_marked(x, marked):
            packed = pack(x)
            if outer_pack is None:
                return packed
            return PackedSpikes(outer_pack(packed.bits), *_layout(packed))
        return x if outer_pack is None else outer_pack(x)

    def unpack_hook(saved) -> torch.Tensor:
        if isinstance(saved, PackedSpikes):
            if outer_unpack is None:
                return unpack(saved)
            return unpack(PackedSpikes(outer_unpack(saved.bits), *_layout(saved)))
        return saved if outer_unpack is None else outer_unpack(saved)

    modules = [] if model is None else model.modules()
    handles = [
        module.register_forward_hook(_mark_output)
        for module in modules
        if isinstance(module, MultiStepNeuron)
    ]
    _MARKED.append(marked)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack_hook, unpack_hook):
            yield
    finally:
        _MARKED.remove(marked)
        for handle in handles:
            handle.remove()


def _layout(packed: PackedSpikes) -> tuple:
    return packed.shape, packed.stride, packed.offset, packed.dtype


def kept_for_backward(
    run: Callable[[], Result], exclude: Iterable[torch.Tensor] = ()
) -> tuple[Result, int]:
    """``run()``'s result and the bytes of the tensors autograd keeps for its backward, not
    counting those that share memory with ``exclude`` (say, the parameters)."""
    excluded = {t.data_ptr() for t in exclude}
    total = 0

    def count(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if t.data_ptr() not in excluded:
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(count, lambda t: t):
        result = run()
    return result, total
