"""The ``torch`` backend: forward and backward passes in PyTorch operations (autograd rule:
:mod:`.keep_input`, which keeps only the input; backward recomputes the membrane).

On the CPU the time loop runs over blocks of neurons small enough to stay in the cache (on a
GPU over all neurons at once, one launch per operation), and each step is a handful of
in-place element-wise passes on preallocated buffers. The charge is rounded as spikingjelly
rounds it (see :mod:`.dynamics`), so spikes and membranes equal spikingjelly's and the
``numba`` backend's bit for bit. Half-precision inputs are computed in float32; float32 and
float64 in their own precision. It is the fallback of the ``numba`` backend and runs every
dtype on every device.
"""

from __future__ import annotations

import math

import torch

from .dynamics import NeuronSpec, state_dtype
from .surrogate import surrogate_grad

BLOCK_NEURONS = 1 << 17
"""Neurons per block of the time loop (one block's state: 512 KiB in float32)."""


def _block_size(n: int, device: torch.device) -> int:
    """Neurons per block: ``BLOCK_NEURONS`` on the CPU, all ``n`` elsewhere (at least 1)."""
    return max(1, min(n, BLOCK_NEURONS) if device.type == "cpu" else n)


def _blocks(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class _Buffers:
    """Preallocated ``[n]`` work buffers of one block: a float scratch and a bool mask."""

    def __init__(self, n: int, dtype: torch.dtype, device: torch.device) -> None:
        self.scratch = torch.empty(n, dtype=dtype, device=device)
        self.mask = torch.empty(n, dtype=torch.bool, device=device)

    def at(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scratch[:size], self.mask[:size]


def _charge(v: torch.Tensor, x: torch.Tensor, spec: NeuronSpec, out: torch.Tensor,
            buffers: _Buffers) -> None:
    """``out <- H[t]`` from ``V[t-1]`` and ``X[t]`` (all ``[n]``), rounded as spikingjelly
    does; where ``V[t-1]`` is infinite, ``H[t] = V[t-1] + X[t]``. ``out`` is not ``v``."""
    if not spec.is_lif:
        torch.add(v, x, out=out)
        return
    reset = spec.v_rest
    if spec.decay_input:  # V + (X - (V - V_reset)) / tau
        torch.sub(x, torch.sub(v, reset, out=out) if reset else v, out=out)
        out.div_(spec.tau).add_(v)
    else:  # V - (V - V_reset) / tau + X
        torch.sub(v, reset, out=out).div_(spec.tau)
        torch.sub(v, out, out=out).add_(x)
    scratch, infinite = buffers.at(v.numel())
    torch.eq(torch.abs(v, out=scratch), math.inf, out=infinite)
    torch.where(infinite, torch.add(v, x, out=scratch), out, out=out)


def _fire_and_reset(h: torch.Tensor, spec: NeuronSpec, spikes: torch.Tensor, v: torch.Tensor,
                    buffers: _Buffers) -> None:
    """``spikes <- S = (H >= v_threshold)`` (0/1) and ``v <- V`` after the reset;
    all ``[n]``. A hard reset sets ``v_reset`` whatever ``H`` (``+inf`` included)."""
    scratch, fired = buffers.at(h.numel())
    torch.ge(h, spec.v_threshold, out=fired)
    spikes.copy_(fired)
    if spec.hard_reset:
        v.copy_(h).masked_fill_(fired, spec.v_reset)
    else:
        torch.sub(h, scratch.copy_(fired), alpha=spec.v_threshold, out=v)


def _initial_state(
    v_init: torch.Tensor | None, n: int, dtype: torch.dtype, device: torch.device, spec: NeuronSpec
) -> torch.Tensor:
    """A fresh membrane ``[N]``: a copy of ``v_init``, or ``spec.v_rest`` everywhere."""
    if v_init is None:
        return torch.full((n,), spec.v_rest, dtype=dtype, device=device)
    return v_init.reshape(n).to(dtype=dtype, copy=True)


def forward_pass(
    x: torch.Tensor, v_init: torch.Tensor | None, spec: NeuronSpec, store_state: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes ``[T, N]`` (dtype of ``x``) and final membrane (``[N]``, empty unless
    ``store_state``; float64 for float64 input, else float32) for input ``x``: ``[T, N]``."""
    steps, n = x.shape
    dtype = state_dtype(x.dtype)
    spikes = torch.empty_like(x)
    v_all = _initial_state(v_init, n, dtype, x.device, spec)
    width = _block_size(n, x.device)
    charged = torch.empty(width, dtype=dtype, device=x.device)
    buffers = _Buffers(width, dtype, x.device)
    for block in _blocks(n, width):
        v = v_all[block]
        h = charged[: v.numel()]
        xb = x[:, block].to(dtype)
        for t in range(steps):
            _charge(v, xb[t], spec, h, buffers)
            _fire_and_reset(h, spec, spikes[t, block], v, buffers)
    return spikes, (v_all if store_state else v_all.new_empty(0))


def backward_pass(
    x: torch.Tensor,
    v_init: torch.Tensor | None,
    grad_spikes: torch.Tensor | None,
    grad_v: torch.Tensor | None,
    spec: NeuronSpec,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients w.r.t. ``x`` ``[T, N]`` and ``v_init`` (``[N]``, empty without ``v_init``);
    the membrane is recomputed.

    ``grad_spikes`` ``[T, N]`` and ``grad_v`` (of the final membrane, ``[N]``) may be None.
    """
    steps, n = x.shape
    dtype = state_dtype(x.dtype)
    grad_x = torch.empty_like(x)
    grad_v_init = torch.empty(n, dtype=dtype, device=x.device)
    v_all = _initial_state(v_init, n, dtype, x.device, spec)
    width = _block_size(n, x.device)
    charged, fired = torch.empty(2, steps, width, dtype=dtype, device=x.device)
    sg, carry = torch.empty(2, width, dtype=dtype, device=x.device)
    buffers = _Buffers(width, dtype, x.device)
    needs_sg = grad_spikes is not None or not spec.detach_reset
    for block in _blocks(n, width):
        v = v_all[block]
        size = v.numel()
        xb = x[:, block].to(dtype)
        for t in range(steps):
            _charge(v, xb[t], spec, charged[t, :size], buffers)
            _fire_and_reset(charged[t, :size], spec, fired[t, :size], v, buffers)
        g = carry[:size]
        g.copy_(grad_v[block]) if grad_v is not None else g.zero_()
        for t in reversed(range(steps)):
            h = charged[t, :size]
            if needs_sg:
                torch.sub(h, spec.v_threshold, out=sg[:size])
                surrogate_grad(sg[:size], spec.surrogate, spec.alpha)
            _times_reset_grad_(g, h, fired[t, :size], sg[:size], spec, buffers)
            if grad_spikes is not None:
                g.addcmul_(sg[:size], grad_spikes[t, block])
            torch.mul(g, spec.input_gain, out=grad_x[t, block])
            g.mul_(spec.decay)
        grad_v_init[block] = g
    return grad_x, (grad_v_init if v_init is not None else grad_v_init.new_empty(0))


def _times_reset_grad_(
    carry: torch.Tensor, h: torch.Tensor, fired: torch.Tensor, sg: torch.Tensor,
    spec: NeuronSpec, buffers: _Buffers,
) -> None:
    """``carry <- carry * dV[t]/dH[t]`` in place, given ``H[t]``, its spikes ``fired`` (0/1)
    and ``sg = dS/dH`` (used without detach; ``(v_reset - H) sg`` is 0 where ``H`` is
    infinite, its limit)."""
    scratch, _ = buffers.at(h.numel())
    if spec.hard_reset and spec.detach_reset:
        carry.addcmul_(carry, fired, value=-1.0)
        return
    if spec.hard_reset:
        finfo = torch.finfo(h.dtype)
        torch.clamp(h, finfo.min, finfo.max, out=scratch).sub_(spec.v_reset).mul_(sg)
        scratch.neg_().sub_(fired).add_(1.0)
    elif spec.detach_reset:
        return
    else:
        torch.mul(sg, -spec.v_threshold, out=scratch).add_(1.0)
    carry.mul_(scratch)
