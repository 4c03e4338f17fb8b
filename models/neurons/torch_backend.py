"""The ``torch`` backend: forward and backward passes in PyTorch operations (autograd rule:
:mod:`.keep_input`, which keeps only the input; backward recomputes the membrane).

On the CPU the time loop runs over blocks of neurons small enough to stay in the cache (on a
GPU over all neurons at once, one launch per operation), and each step is a handful of
in-place element-wise passes on preallocated buffers (spike masks are kept as floating-point
0/1, never as bool, which is slow on CPU). Half-precision inputs are computed in float32;
float32 and float64 in their own precision.
"""

from __future__ import annotations

import torch

from .dynamics import NeuronSpec
from .surrogate import surrogate_grad

BLOCK_NEURONS = 1 << 17
"""Neurons per block of the time loop (one block's state: 512 KiB in float32)."""


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _block_size(n: int, device: torch.device) -> int:
    """Neurons per block: ``BLOCK_NEURONS`` on the CPU, all ``n`` elsewhere (at least 1)."""
    return max(1, min(n, BLOCK_NEURONS) if device.type == "cpu" else n)


def _blocks(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _charge(v: torch.Tensor, x: torch.Tensor, spec: NeuronSpec, out: torch.Tensor) -> None:
    """``out <- H = decay V + input_gain X + bias``; all ``[N]``; ``out`` may be ``v``."""
    if spec.is_lif and spec.decay_input:
        torch.lerp(v, x, spec.input_gain, out=out)
    elif spec.decay != 1.0:
        torch.mul(v, spec.decay, out=out).add_(x)
    else:
        torch.add(v, x, out=out)
    if spec.bias != 0.0:
        out.add_(spec.bias)


def _fire_and_reset(h: torch.Tensor, spec: NeuronSpec, spikes: torch.Tensor, v: torch.Tensor):
    """``spikes <- S = (H >= v_threshold)`` (0/1) and ``v <- V`` after the reset; all ``[N]``."""
    torch.ge(h, spec.v_threshold, out=spikes)
    if spec.hard_reset:
        torch.addcmul(h, h, spikes, value=-1.0, out=v)
        if spec.v_reset != 0.0:
            v.add_(spikes, alpha=spec.v_reset)
    else:
        torch.sub(h, spikes, alpha=spec.v_threshold, out=v)


def _initial_state(
    v_init: torch.Tensor | None, n: int, dtype: torch.dtype, device: torch.device, spec: NeuronSpec
) -> torch.Tensor:
    """A fresh membrane ``[N]``: a copy of ``v_init``, or ``spec.v_rest`` everywhere."""
    if v_init is None:
        return torch.full((n,), spec.v_rest, dtype=dtype, device=device)
    return v_init.reshape(n).to(dtype=dtype, copy=True)


def _block_input(x: torch.Tensor, block: slice, dtype: torch.dtype) -> torch.Tensor:
    """``x[:, block]`` ``[T, n]`` in the compute dtype (a view when it already is)."""
    return x[:, block].to(dtype)


def forward_pass(
    x: torch.Tensor, v_init: torch.Tensor | None, spec: NeuronSpec, store_state: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes ``[T, N]`` (dtype of ``x``) and final membrane ``[N]`` for input ``x``: ``[T, N]``
    (the membrane is computed either way, so ``store_state`` changes nothing here)."""
    steps, n = x.shape
    dtype = _compute_dtype(x.dtype)
    spikes = torch.empty_like(x)
    v_all = _initial_state(v_init, n, dtype, x.device, spec)
    native = dtype == x.dtype
    width = _block_size(n, x.device)
    fired = None if native else torch.empty(width, dtype=dtype, device=x.device)
    for block in _blocks(n, width):
        v = v_all[block]
        xb = _block_input(x, block, dtype)
        for t in range(steps):
            _charge(v, xb[t], spec, out=v)
            s = spikes[t, block] if native else fired[: v.numel()]
            _fire_and_reset(v, spec, s, v)
            if not native:
                spikes[t, block].copy_(s)
    return spikes, v_all


def backward_pass(
    x: torch.Tensor,
    v_init: torch.Tensor | None,
    grad_spikes: torch.Tensor | None,
    grad_v: torch.Tensor | None,
    spec: NeuronSpec,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients w.r.t. ``x`` ``[T, N]`` and ``v_init`` ``[N]``; the membrane is recomputed.

    ``grad_spikes`` ``[T, N]`` and ``grad_v`` (of the final membrane, ``[N]``) may be None.
    """
    steps, n = x.shape
    dtype = _compute_dtype(x.dtype)
    grad_x = torch.empty_like(x)
    grad_v_init = torch.empty(n, dtype=dtype, device=x.device)
    v_all = _initial_state(v_init, n, dtype, x.device, spec)
    width = _block_size(n, x.device)
    charged, fired = torch.empty(2, steps, width, dtype=dtype, device=x.device)
    sg, carry, scratch = torch.empty(3, width, dtype=dtype, device=x.device)
    needs_sg = grad_spikes is not None or not spec.detach_reset
    for block in _blocks(n, width):
        v = v_all[block]
        size = v.numel()
        xb = _block_input(x, block, dtype)
        for t in range(steps):
            _charge(v, xb[t], spec, out=charged[t, :size])
            _fire_and_reset(charged[t, :size], spec, fired[t, :size], v)
        g = carry[:size]
        g.copy_(grad_v[block]) if grad_v is not None else g.zero_()
        for t in reversed(range(steps)):
            h = charged[t, :size]
            if needs_sg:
                torch.sub(h, spec.v_threshold, out=sg[:size])
                surrogate_grad(sg[:size], spec.surrogate, spec.alpha)
            _times_reset_grad_(g, h, fired[t, :size], sg[:size], spec, scratch[:size])
            if grad_spikes is not None:
                g.addcmul_(sg[:size], grad_spikes[t, block])
            torch.mul(g, spec.input_gain, out=grad_x[t, block])
            g.mul_(spec.decay)
        grad_v_init[block] = g
    return grad_x, grad_v_init


def _times_reset_grad_(
    carry: torch.Tensor, h: torch.Tensor, fired: torch.Tensor, sg: torch.Tensor,
    spec: NeuronSpec, scratch: torch.Tensor,
) -> None:
    """``carry <- carry * dV[t]/dH[t]`` in place, given ``H[t]``, its spikes ``fired`` (0/1)
    and ``sg = dS/dH`` (used without detach)."""
    if spec.hard_reset and spec.detach_reset:
        carry.addcmul_(carry, fired, value=-1.0)
        return
    if spec.hard_reset:
        torch.sub(1.0, fired, out=scratch).addcmul_(sg, h, value=-1.0).add_(sg, alpha=spec.v_reset)
    elif spec.detach_reset:
        return
    else:
        torch.mul(sg, -spec.v_threshold, out=scratch).add_(1.0)
    carry.mul_(scratch)
