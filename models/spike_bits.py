"""numba kernels that pack 0/1 tensors into bits and back, for :mod:`models.spike_storage`.

One pass each way: packing reads the spikes and writes one bit per element (bit ``k`` of
byte ``j`` is element ``8 j + k``, as the PyTorch path writes it); unpacking reads the bits
and writes the spikes. PyTorch operations take three passes each way (a cast, a product and
a sum; a mask, a comparison and a cast), through tensors as large as the spikes.
"""

from __future__ import annotations

import torch
from numba import njit

_JIT = dict(nogil=True, cache=True, boundscheck=False)


@njit(**_JIT)
def _pack_kernel(values, bits):
    """``bits [ceil(n / 8)]`` uint8 <- whether each of ``values [n]`` is not 0."""
    n = values.size
    for j in range(bits.size):
        byte = 0
        for k in range(min(8, n - 8 * j)):
            if values[8 * j + k] != 0:
                byte |= 1 << k
        bits[j] = byte


@njit(**_JIT)
def _unpack_kernel(bits, values, one, zero):
    """``values [n]`` <- ``one`` where the bit of each element is set, else ``zero``."""
    n = values.size
    for j in range(bits.size):
        byte = bits[j]
        for k in range(min(8, n - 8 * j)):
            values[8 * j + k] = one if (byte >> k) & 1 else zero


def pack_bits(values: torch.Tensor) -> torch.Tensor:
    """Bits ``[ceil(n / 8)]`` uint8 of a contiguous float32 or float64 CPU tensor of 0s and 1s."""
    bits = torch.empty(-(-values.numel() // 8), dtype=torch.uint8)
    _pack_kernel(values.detach().reshape(-1).numpy(), bits.numpy())
    return bits


def unpack_bits(bits: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Fill the contiguous float32 or float64 CPU tensor ``out`` from ``bits``; returns it."""
    flat = out.reshape(-1).numpy()
    _unpack_kernel(bits.numpy(), flat, flat.dtype.type(1), flat.dtype.type(0))
    return out


DTYPES = (torch.float32, torch.float64)
"""The dtypes these kernels pack (others take PyTorch's operations)."""
