"""The ``triton`` backend: one fused kernel for the forward pass, one for the backward pass.

A program owns ``BLOCK`` neurons and runs the whole time loop with the membrane in fp32
registers. Forward reads ``X`` and writes ``S``; it saves nothing but ``X``. Backward re-runs
the charge from ``X`` keeping ``H[t]`` in registers (a ``[T, BLOCK]`` tile; ``T`` is a
compile-time constant), then walks back in time reading ``dL/dS`` and writing ``dL/dX``.
For ``T > MAX_REGISTER_STEPS`` it keeps ``H`` in a scratch buffer instead.

The autograd rule (:mod:`.keep_input`) launches the two kernels: directly in eager mode,
through the custom ops ``maxformer::triton_neuron_forward`` and ``..._backward`` while
``torch.compile`` or ``torch.export`` traces. Set ``TRITON_INTERPRET=1`` before importing
this module to run the kernels on the CPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .dynamics import NeuronSpec
from .surrogate import SURROGATES

BLOCK_FORWARD = 1024
FORWARD_WARPS = 4
TILE_ELEMENTS = 2048
"""Elements of one ``[T, BLOCK]`` register tile of the backward kernel."""
MAX_BACKWARD_WARPS = 4
MAX_REGISTER_STEPS = 16
SIGMOID: tl.constexpr = tl.constexpr(SURROGATES["sigmoid"].id)


@triton.jit
def _load_or_fill(ptr, offs, mask, fill, LOAD: tl.constexpr, BLOCK: tl.constexpr):
    """``ptr[offs]`` in fp32 when ``LOAD``, else ``fill`` everywhere: ``[BLOCK]``."""
    if LOAD:
        values = tl.load(ptr + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        values = tl.zeros([BLOCK], dtype=tl.float32) + fill
    return values


@triton.jit
def _charge(v, x, decay, input_gain, bias):
    """``H[t]``; where ``V[t-1]`` is infinite (``v - v`` is not 0), ``V[t-1] + X[t]``."""
    return tl.where(v - v == 0.0, v * decay + x * input_gain + bias, v + x)


@triton.jit
def _fire_and_reset(h, v_threshold, v_reset, HARD_RESET: tl.constexpr):
    fired = h >= v_threshold
    if HARD_RESET:
        v = tl.where(fired, v_reset, h)
    else:
        v = tl.where(fired, h - v_threshold, h)
    return fired.to(tl.float32), v


@triton.jit
def _surrogate_grad(x, alpha, SURROGATE: tl.constexpr):
    """``dS/dH`` at ``x = H - v_threshold`` of the surrogate whose id is ``SURROGATE`` (in
    :data:`.surrogate.SURROGATES`: sigmoid, else atan); 0 at infinite ``x``."""
    if SURROGATE == SIGMOID:
        sig = tl.sigmoid(alpha * x)
        sg = alpha * sig * (1.0 - sig)
    else:
        z = 1.5707963267948966 * alpha * x
        sg = alpha / (2.0 * (1.0 + z * z))
    return sg


@triton.jit
def _grad_h(h, gs, carry, v_threshold, v_reset, alpha,
            HARD_RESET: tl.constexpr, DETACH_RESET: tl.constexpr, SURROGATE: tl.constexpr):
    """``dL/dH[t]`` from ``dL/dS[t]`` and the carry ``dL/dV[t]``."""
    sg = _surrogate_grad(h - v_threshold, alpha, SURROGATE)
    if HARD_RESET:
        dv_dh = (h < v_threshold).to(tl.float32)
        if not DETACH_RESET:
            dv_dh += tl.where(sg == 0.0, 0.0, (v_reset - h) * sg)
    else:
        if DETACH_RESET:
            dv_dh = 1.0
        else:
            dv_dh = 1.0 - v_threshold * sg
    return gs * sg + carry * dv_dh


@triton.jit
def _forward_kernel(
    x_ptr, s_ptr, v_init_ptr, v_out_ptr, n,
    decay, input_gain, bias, v_threshold, v_reset,
    T: tl.constexpr, HARD_RESET: tl.constexpr, HAS_V_INIT: tl.constexpr,
    STORE_STATE: tl.constexpr, BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    v = _load_or_fill(v_init_ptr, offs, mask, v_reset, HAS_V_INIT, BLOCK)
    x_ptrs = x_ptr + offs
    s_ptrs = s_ptr + offs
    for _ in range(T):
        x = tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
        h = _charge(v, x, decay, input_gain, bias)
        s, v = _fire_and_reset(h, v_threshold, v_reset, HARD_RESET)
        tl.store(s_ptrs, s.to(s_ptr.dtype.element_ty), mask=mask)
        x_ptrs += n
        s_ptrs += n
    if STORE_STATE:
        tl.store(v_out_ptr + offs, v, mask=mask)


@triton.jit
def _backward_kernel(
    x_ptr, gs_ptr, gx_ptr, v_init_ptr, gv_ptr, gv_init_ptr, n,
    decay, input_gain, bias, v_threshold, v_reset, alpha,
    T: tl.constexpr, T_POW2: tl.constexpr, HARD_RESET: tl.constexpr,
    DETACH_RESET: tl.constexpr, SURROGATE: tl.constexpr, HAS_V_INIT: tl.constexpr,
    HAS_GRAD_V: tl.constexpr, BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    steps = tl.arange(0, T_POW2)
    tile = steps[:, None].to(tl.int64) * n + offs[None, :]
    tile_mask = (steps[:, None] < T) & mask[None, :]
    xs = tl.load(x_ptr + tile, mask=tile_mask, other=0.0).to(tl.float32)
    v = _load_or_fill(v_init_ptr, offs, mask, v_reset, HAS_V_INIT, BLOCK)
    hs = tl.zeros([T_POW2, BLOCK], dtype=tl.float32)
    for t in tl.static_range(T):
        now = steps[:, None] == t
        h = _charge(v, tl.sum(tl.where(now, xs, 0.0), axis=0), decay, input_gain, bias)
        hs = tl.where(now, h[None, :], hs)
        _, v = _fire_and_reset(h, v_threshold, v_reset, HARD_RESET)
    gss = tl.load(gs_ptr + tile, mask=tile_mask, other=0.0).to(tl.float32)
    carry = _load_or_fill(gv_ptr, offs, mask, 0.0, HAS_GRAD_V, BLOCK)
    gxs = tl.zeros([T_POW2, BLOCK], dtype=tl.float32)
    for i in tl.static_range(T):
        now = steps[:, None] == (T - 1 - i)
        h = tl.sum(tl.where(now, hs, 0.0), axis=0)
        gs = tl.sum(tl.where(now, gss, 0.0), axis=0)
        gh = _grad_h(h, gs, carry, v_threshold, v_reset, alpha, HARD_RESET, DETACH_RESET, SURROGATE)
        gxs = tl.where(now, (gh * input_gain)[None, :], gxs)
        carry = gh * decay
    tl.store(gx_ptr + tile, gxs.to(gx_ptr.dtype.element_ty), mask=tile_mask)
    if HAS_V_INIT:
        tl.store(gv_init_ptr + offs, carry, mask=mask)


@triton.jit
def _backward_scratch_kernel(
    x_ptr, gs_ptr, gx_ptr, h_ptr, v_init_ptr, gv_ptr, gv_init_ptr, n, steps,
    decay, input_gain, bias, v_threshold, v_reset, alpha,
    HARD_RESET: tl.constexpr, DETACH_RESET: tl.constexpr, SURROGATE: tl.constexpr,
    HAS_V_INIT: tl.constexpr, HAS_GRAD_V: tl.constexpr, BLOCK: tl.constexpr,
):
    """The backward pass for long sequences: ``H`` goes to the fp32 buffer ``h_ptr``."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    v = _load_or_fill(v_init_ptr, offs, mask, v_reset, HAS_V_INIT, BLOCK)
    at = offs
    for _ in range(steps):
        h = _charge(v, tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32),
                    decay, input_gain, bias)
        tl.store(h_ptr + at, h, mask=mask)
        _, v = _fire_and_reset(h, v_threshold, v_reset, HARD_RESET)
        at += n
    carry = _load_or_fill(gv_ptr, offs, mask, 0.0, HAS_GRAD_V, BLOCK)
    for _ in range(steps):
        at -= n
        h = tl.load(h_ptr + at, mask=mask, other=0.0)
        gs = tl.load(gs_ptr + at, mask=mask, other=0.0).to(tl.float32)
        gh = _grad_h(h, gs, carry, v_threshold, v_reset, alpha, HARD_RESET, DETACH_RESET, SURROGATE)
        tl.store(gx_ptr + at, (gh * input_gain).to(gx_ptr.dtype.element_ty), mask=mask)
        carry = gh * decay
    if HAS_V_INIT:
        tl.store(gv_init_ptr + offs, carry, mask=mask)


def _tile_warps(block: int, element_size: int) -> int:
    """Warps for a ``[T, block]`` tile: no more than its rows of 16-byte vectors fill, so that
    every warp lies along the neurons and the sums over time stay in registers."""
    vectors_per_warp = 32 * (16 // element_size)
    return max(1, min(MAX_BACKWARD_WARPS, block // vectors_per_warp))


def launch_forward(
    x: torch.Tensor, v_init: torch.Tensor | None, spec: NeuronSpec, store_state: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes ``[T, N]`` of ``x`` ``[T, N]`` (contiguous) and the fp32 final membrane ``[N]``
    (empty unless ``store_state``)."""
    steps, n = x.shape
    spikes = torch.empty_like(x)
    v_out = torch.empty(n if store_state else 0, dtype=torch.float32, device=x.device)
    if n == 0 or steps == 0:
        return spikes, v_out
    _forward_kernel[(triton.cdiv(n, BLOCK_FORWARD),)](
        x, spikes, v_init, v_out, n, spec.decay, spec.input_gain, spec.bias, spec.v_threshold,
        spec.v_rest, T=steps, HARD_RESET=spec.hard_reset, HAS_V_INIT=v_init is not None,
        STORE_STATE=store_state, BLOCK=BLOCK_FORWARD, num_warps=FORWARD_WARPS,
    )
    return spikes, v_out


def launch_backward(
    x: torch.Tensor, v_init: torch.Tensor | None, grad_spikes: torch.Tensor,
    grad_v: torch.Tensor | None, spec: NeuronSpec,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``dL/dx`` ``[T, N]`` and ``dL/dv_init`` (fp32 ``[N]``, empty without ``v_init``) from
    ``dL/dS`` ``[T, N]`` and ``dL/dV[T]`` ``[N]`` (or None), all contiguous."""
    steps, n = x.shape
    grad_x = torch.empty_like(x)
    grad_v_init = torch.empty(n if v_init is not None else 0, dtype=torch.float32, device=x.device)
    if n == 0 or steps == 0:
        return grad_x, grad_v_init
    flags = dict(
        HARD_RESET=spec.hard_reset, DETACH_RESET=spec.detach_reset,
        SURROGATE=SURROGATES[spec.surrogate].id, HAS_V_INIT=v_init is not None,
        HAS_GRAD_V=grad_v is not None,
    )
    numbers = (spec.decay, spec.input_gain, spec.bias, spec.v_threshold, spec.v_rest, spec.alpha)
    if steps <= MAX_REGISTER_STEPS:
        t_pow2 = triton.next_power_of_2(steps)
        block = max(32, TILE_ELEMENTS // t_pow2)
        _backward_kernel[(triton.cdiv(n, block),)](
            x, grad_spikes, grad_x, v_init, grad_v, grad_v_init, n, *numbers,
            T=steps, T_POW2=t_pow2, BLOCK=block, num_warps=_tile_warps(block, x.element_size()),
            **flags,
        )
    else:
        charged = torch.empty(steps, n, dtype=torch.float32, device=x.device)
        _backward_scratch_kernel[(triton.cdiv(n, BLOCK_FORWARD),)](
            x, grad_spikes, grad_x, charged, v_init, grad_v, grad_v_init, n, steps, *numbers,
            BLOCK=BLOCK_FORWARD, **flags,
        )
    return grad_x, grad_v_init


forward_pass = launch_forward
"""The forward pass of :mod:`.keep_input`'s contract."""


def backward_pass(
    x: torch.Tensor, v_init: torch.Tensor | None, grad_spikes: torch.Tensor | None,
    grad_v: torch.Tensor | None, spec: NeuronSpec,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``dL/dx`` ``[T, N]`` and ``dL/dv_init`` (fp32 ``[N]``) from the gradients of the spikes
    and of the final membrane (either may be None)."""
    grad_spikes = torch.zeros_like(x) if grad_spikes is None else grad_spikes
    return launch_backward(x, v_init, grad_spikes, grad_v, spec)
