"""Keep binary tensors saved for backward in 1 bit per element, and restore them exactly.

Layers that read spikes (convolutions, linear layers, spike-matrix products, max-pooling)
save their spike input for backward as a float tensor of 0s and 1s. Inside
:func:`compact_spikes`, every floating-point tensor that autograd saves is checked: when all
its values are 0 or 1, it is stored as packed bits (32x smaller than float32) and unpacked
bit for bit when backward needs it. Anything else is kept as it is, so the result is always
exact.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

MIN_ELEMENTS = 4096
"""Smaller tensors are not worth the check."""


@dataclass(frozen=True)
class PackedSpikes:
    """A 0/1 tensor stored as bits: ``bits`` ``[ceil(numel / 8)]`` uint8 (or what an outer
    saved-tensor hook made of them)."""

    bits: object
    shape: torch.Size
    dtype: torch.dtype


_BIT_WEIGHTS: dict[torch.device, torch.Tensor] = {}


def _weights(device: torch.device) -> torch.Tensor:
    if device not in _BIT_WEIGHTS:
        _BIT_WEIGHTS[device] = (2 ** torch.arange(8, device=device)).to(torch.uint8)
    return _BIT_WEIGHTS[device]


def is_binary(x: torch.Tensor) -> bool:
    """Whether every element of ``x`` is 0 or 1 (a synchronising check on the GPU)."""
    return bool(((x == 0) | (x == 1)).all())


def pack(x: torch.Tensor) -> PackedSpikes:
    """Bits of the 0/1 tensor ``x`` (any shape), eight to a byte."""
    flat = x.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    bits = (flat.view(-1, 8) * _weights(x.device)).sum(1, dtype=torch.uint8)
    return PackedSpikes(bits, x.shape, x.dtype)


def unpack(packed: PackedSpikes) -> torch.Tensor:
    """The tensor that :func:`pack` packed, exactly."""
    bits = packed.bits.unsqueeze(1).bitwise_and(_weights(packed.bits.device)).ne(0)
    numel = packed.shape.numel()
    return bits.reshape(-1)[:numel].to(packed.dtype).reshape(packed.shape)


@contextlib.contextmanager
def compact_spikes(enabled: bool = True) -> Iterator[None]:
    """Inside, binary tensors saved for backward take 1 bit per element.

    Saved-tensor hooks already active outside (a memory probe, CPU offloading) still apply:
    they receive the packed bits instead of the spike tensor.
    """
    if not enabled:
        yield
        return
    outer = torch._C._autograd._top_saved_tensors_default_hooks(False)
    outer_pack, outer_unpack = outer if outer is not None else (None, None)

    def pack_hook(x: torch.Tensor):
        if x.is_floating_point() and x.numel() >= MIN_ELEMENTS and is_binary(x):
            packed = pack(x)
            if outer_pack is None:
                return packed
            return PackedSpikes(outer_pack(packed.bits), packed.shape, packed.dtype)
        return x if outer_pack is None else outer_pack(x)

    def unpack_hook(saved) -> torch.Tensor:
        if isinstance(saved, PackedSpikes):
            if outer_unpack is None:
                return unpack(saved)
            return unpack(PackedSpikes(outer_unpack(saved.bits), saved.shape, saved.dtype))
        return saved if outer_unpack is None else outer_unpack(saved)

    with torch.autograd.graph.saved_tensors_hooks(pack_hook, unpack_hook):
        yield
