"""The ``numba`` backend: fused CPU kernels for the forward and backward passes.

As the Triton kernels do on a GPU, each kernel runs the whole time loop for a block of
``BLOCK`` neurons whose state stays in the L1 cache, and touches each byte of the big tensors
once: forward reads ``X`` and writes ``S``; backward re-runs the charge from ``X`` into a
``[T, block]`` tile, then walks back in time reading ``dL/dS`` and writing ``dL/dX``. The
inner loops run over the neurons of a block and LLVM turns them into SIMD code; the sigmoid
surrogate uses an exponential written here (a Cody-Waite reduction and a degree-13
polynomial, within a few ulp) because libm's ``exp`` does not vectorise. Arithmetic is in
the input's precision, float32 or float64 (other dtypes run on the ``torch`` backend), and
the charge is rounded as spikingjelly rounds it, so spikes and membranes are spikingjelly's
bit for bit (see :mod:`.dynamics`).

Threads: the neurons are cut into pieces of at least ``MIN_PIECE_ELEMENTS`` elements, about
``PIECES_PER_THREAD`` per thread, and ``torch.get_num_threads()`` threads (the caller and a
pool that sleeps when idle) take pieces until none is left. One parallel region per pass, no
barrier per time step, and a thread held up by a busy core simply takes fewer pieces. Inputs
too small to share run in the calling thread.

Fresh outputs: on Linux the kernels' output tensors ask for transparent huge pages, so new
memory costs one page fault per 2 MiB instead of one per 4 KiB on first touch.

Why numba, chosen by measurement (``benchmarks/RESULTS.md``): it installs from wheels, needs
no compiler at install or run time, and compiles these loops with LLVM on first use
(about 11 s for float32 on a busy 2-core machine); ``cache=True`` keeps the machine code on
disk (``__pycache__`` beside this file, or numba's cache folder where that is read-only), so
later processes load it in about a second. The same two loops written as PyTorch operations
and compiled by inductor ran 1.6x (forward) and 1.9x (backward) slower in the same run, and
their first call compiled for 146 s with a C++ compiler that users may not have; a loop of
PyTorch operations (the ``torch`` backend) moves every intermediate through memory.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit

from .dynamics import NeuronSpec
from .surrogate import SURROGATES

BLOCK = 1024
"""Neurons per block of the forward kernel (their membrane: 4 KiB in float32)."""
BACKWARD_BLOCK = 4096
"""Neurons per block of the backward kernel, at most."""
TILE_ELEMENTS = 65536
"""Elements of the backward kernel's ``[T, block]`` tile of ``H`` at most (256 KiB in
float32: it stays in the L2 cache)."""
MIN_PIECE_ELEMENTS = 1 << 17
"""Smallest share of ``T x N`` elements worth handing to another thread."""
PIECES_PER_THREAD = 4

# Charge modes and the indices of the coefficient vectors the kernels read.
DECAY_INPUT, LEAK, INTEGRATE = 0, 1, 2
TAU, THRESHOLD, RESET, ALPHA, ZERO, ONE, INF = range(7)
ATAN_SCALE, HALF_ALPHA, EXP_LOWEST, LOG2E, MAGIC, LN2_HI, LN2_LO, POLY = range(7, 15)
POLY_DEGREE = 13
MAGIC_BITS, EXPONENT_BIAS, MANTISSA_BITS = range(3)
SIGMOID, ATAN = SURROGATES["sigmoid"].id, SURROGATES["atan"].id

_JIT = dict(nogil=True, cache=True, error_model="numpy", boundscheck=False)


@njit(inline="always", **_JIT)
def _charged(vi, xi, mode, tau, reset, inf):
    """``H[t]`` from ``V[t-1] = vi`` and ``X[t] = xi``, rounded as spikingjelly rounds;
    where ``V[t-1]`` is infinite, ``V[t-1] + X[t]``."""
    if mode == INTEGRATE:
        return vi + xi
    if mode == DECAY_INPUT:
        charged = vi + (xi - (vi - reset)) / tau
    else:
        charged = vi - (vi - reset) / tau + xi
    return vi + xi if abs(vi) == inf else charged


@njit(**_JIT)
def _step(v, x, h, spikes, n, mode, hard, c, keep_h):
    """One time step of neurons ``:n`` in one pass: ``h[:n] <- H[t]`` from
    ``V[t-1] = v[:n]`` and ``X[t] = x[:n]``, ``spikes[:n] <- S[t]``, and ``v[:n] <- V[t]``:
    ``v_reset`` (hard) or ``H - v_threshold`` (soft) where it fired, else ``H``; ``h`` is
    written only when ``keep_h``. (One loop keeps the memory streams of ``x`` and ``spikes``
    busy: with a loop per quantity the forward kernel ran 1.8x slower on 4 x 2^22 neurons.)"""
    tau, reset, inf = c[TAU], c[RESET], c[INF]
    threshold, one, zero = c[THRESHOLD], c[ONE], c[ZERO]
    for i in range(n):
        hi = _charged(v[i], x[i], mode, tau, reset, inf)
        fired = hi >= threshold
        if keep_h:
            h[i] = hi
        spikes[i] = one if fired else zero
        after = reset if hard else hi - threshold
        v[i] = after if fired else hi


@njit(**_JIT)
def _forward_kernel(x, spikes, v_init, v_out, lo, hi, c, mode, hard, has_v_init, store_state):
    """Spikes of neurons ``lo:hi`` of ``x`` ``[T, N]`` into ``spikes`` ``[T, N]``, final
    membrane into ``v_out`` ``[N]`` when ``store_state``."""
    v = np.empty(BLOCK, x.dtype)
    h = np.empty(BLOCK, x.dtype)
    for start in range(lo, hi, BLOCK):
        n = min(BLOCK, hi - start)
        if has_v_init:
            v[:n] = v_init[start:start + n]
        else:
            v[:n] = c[RESET]
        for t in range(x.shape[0]):
            _step(v, x[t, start:start + n], h, spikes[t, start:start + n], n, mode, hard, c, False)
        if store_state:
            v_out[start:start + n] = v[:n]


@njit(**_JIT)
def _surrogate_grad(h, sg, scale, scale_bits, n, surrogate, c, ic):
    """``sg[:n] <- dS/dH`` at ``H = h[:n]`` (0 at infinite ``H``). ``scale`` is scratch
    and ``scale_bits`` the same memory as integers."""
    threshold, alpha, zero, one = c[THRESHOLD], c[ALPHA], c[ZERO], c[ONE]
    if surrogate == ATAN:
        for i in range(n):
            z = (h[i] - threshold) * c[ATAN_SCALE]
            sg[i] = c[HALF_ALPHA] / (one + z * z)
        return
    # sigmoid: alpha sig (1 - sig) = alpha e / (1 + e)^2 with e = exp(-|alpha (H - V_th)|).
    lowest = c[EXP_LOWEST]
    for i in range(n):
        y = -abs(alpha * (h[i] - threshold))
        y = lowest if y < lowest else y
        shifted = y * c[LOG2E] + c[MAGIC]  # round(y / ln 2) in the low mantissa bits
        k = shifted - c[MAGIC]
        r = (y - k * c[LN2_HI]) - k * c[LN2_LO]
        p = c[POLY + POLY_DEGREE]
        for j in range(POLY_DEGREE - 1, -1, -1):
            p = p * r + c[POLY + j]
        scale[i] = shifted
        sg[i] = p
    for i in range(n):  # 2^k, built from its bits
        scale_bits[i] = (scale_bits[i] - ic[MAGIC_BITS] + ic[EXPONENT_BIAS]) << ic[MANTISSA_BITS]
    for i in range(n):
        y = -abs(alpha * (h[i] - threshold))
        e = zero if y < lowest else sg[i] * scale[i]
        d = one + e
        sg[i] = alpha * e / (d * d)


@njit(**_JIT)
def _reset_grad(h, sg, dv_dh, n, hard, detach, c):
    """``dv_dh[:n] <- dV[t]/dH[t]`` at ``H = h[:n]`` with ``sg = dS/dH``; the term
    ``(v_reset - H) dS/dH`` (no detach) is 0 where ``dS/dH`` is, as at infinite ``H``."""
    threshold, reset, zero, one = c[THRESHOLD], c[RESET], c[ZERO], c[ONE]
    if hard:
        for i in range(n):
            dv_dh[i] = zero if h[i] >= threshold else one
        if not detach:
            for i in range(n):
                dv_dh[i] += zero if sg[i] == zero else (reset - h[i]) * sg[i]
    elif detach:
        dv_dh[:n] = one
    else:
        for i in range(n):
            dv_dh[i] = one - threshold * sg[i]


@njit(**_JIT)
def _backward_kernel(x, grad_spikes, grad_x, v_init, grad_v, grad_v_init, lo, hi, block, c, ic,
                     mode, hard, detach, surrogate, has_v_init, has_grad_v):
    """``dL/dx`` of neurons ``lo:hi`` into ``grad_x`` ``[T, N]`` from ``dL/dS``
    (``grad_spikes`` ``[T, N]``) and ``dL/dV[T]`` (``grad_v`` ``[N]`` when ``has_grad_v``);
    ``dL/dv_init`` into ``grad_v_init`` ``[N]`` when ``has_v_init``."""
    steps = x.shape[0]
    reset, tau, zero = c[RESET], c[TAU], c[ZERO]
    charged = np.empty((steps, block), x.dtype)
    v = np.empty(block, x.dtype)
    sg = np.empty(block, x.dtype)
    dv_dh = np.empty(block, x.dtype)
    carry = np.empty(block, x.dtype)
    fired = np.empty(block, x.dtype)
    scale_bits = np.empty(block, ic.dtype)
    scale = scale_bits.view(x.dtype)
    for start in range(lo, hi, block):
        n = min(block, hi - start)
        if has_v_init:
            v[:n] = v_init[start:start + n]
        else:
            v[:n] = reset
        for t in range(steps):
            _step(v, x[t, start:start + n], charged[t], fired, n, mode, hard, c, True)
        if has_grad_v:
            carry[:n] = grad_v[start:start + n]
        else:
            carry[:n] = zero
        for t in range(steps - 1, -1, -1):
            h = charged[t]
            _surrogate_grad(h, sg, scale, scale_bits, n, surrogate, c, ic)
            _reset_grad(h, sg, dv_dh, n, hard, detach, c)
            gs = grad_spikes[t, start:start + n]
            gx = grad_x[t, start:start + n]
            if mode == INTEGRATE:
                for i in range(n):
                    gh = gs[i] * sg[i] + carry[i] * dv_dh[i]
                    gx[i] = gh
                    carry[i] = gh
            elif mode == DECAY_INPUT:
                for i in range(n):
                    gh = gs[i] * sg[i] + carry[i] * dv_dh[i]
                    gx[i] = gh / tau
                    carry[i] = gh - gh / tau
            else:
                for i in range(n):
                    gh = gs[i] * sg[i] + carry[i] * dv_dh[i]
                    gx[i] = gh
                    carry[i] = gh - gh / tau
        if has_v_init:
            grad_v_init[start:start + n] = carry[:n]


def _mode(spec: NeuronSpec) -> int:
    if not spec.is_lif:
        return INTEGRATE
    return DECAY_INPUT if spec.decay_input else LEAK


def _coefficients(spec: NeuronSpec, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The neuron's numbers and the exponential's constants in ``dtype`` (float32 or
    float64), and the integer constants that build ``2^k`` from its bits."""
    single = dtype == np.float32
    magic = 1.5 * 2.0 ** (23 if single else 52)
    ln2_hi, ln2_lo = (0.693359375, -2.12194440e-4) if single else (
        6.93147180369123816490e-01, 1.90821492927058770002e-10)
    numbers = [
        spec.tau or 1.0, spec.v_threshold, spec.v_rest, spec.alpha, 0.0, 1.0, math.inf,
        0.5 * math.pi * spec.alpha, 0.5 * spec.alpha, -87.0 if single else -708.0,
        1.0 / math.log(2.0), magic, ln2_hi, ln2_lo,
    ] + [1.0 / math.factorial(k) for k in range(POLY_DEGREE + 1)]
    c = np.array(numbers, dtype=dtype)
    int_type = np.int32 if single else np.int64
    magic_bits = int(c[MAGIC:MAGIC + 1].view(int_type)[0])
    ic = np.array([magic_bits, 127 if single else 1023, 23 if single else 52], dtype=int_type)
    return c, ic


_pool: tuple[ThreadPoolExecutor, int] | None = None
"""The helper threads and how many there are."""
_pool_lock = threading.Lock()


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist: start a new pool when needed."""
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


def _helpers(count: int) -> ThreadPoolExecutor:
    """A pool of at least ``count`` threads (grown when ``torch.set_num_threads`` grows)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[1] < count:
            _pool = (ThreadPoolExecutor(count, thread_name_prefix="maxformer-neurons"), count)
        return _pool[0]


def _in_parallel(steps: int, n: int, run: Callable[[int, int], None], align: int) -> None:
    """``run(lo, hi)`` over pieces covering ``0..n`` neurons (boundaries multiples of
    ``align``), on ``torch.get_num_threads()`` threads."""
    threads = max(1, torch.get_num_threads())
    pieces = min(threads * PIECES_PER_THREAD, steps * n // MIN_PIECE_ELEMENTS)
    if threads == 1 or pieces <= 1:
        run(0, n)
        return
    size = -(-n // pieces)
    size = -(-size // align) * align
    starts = iter(range(0, n, size))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                lo = next(starts, None)
            if lo is None:
                return
            run(lo, min(lo + size, n))

    helpers = min(threads, -(-n // size)) - 1
    futures = [_helpers(threads - 1).submit(work) for _ in range(helpers)]
    try:
        work()
    finally:
        for future in futures:
            future.result()


HUGE_PAGE = 2 << 20
_madvise = getattr(ctypes.CDLL(None), "madvise", None) if sys.platform == "linux" else None
if _madvise is not None:
    _madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
MADV_HUGEPAGE = 14


def _empty_like(x: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like(x)``, on Linux asking for transparent huge pages where it spans
    them: a fresh tensor's first touch then costs one page fault per 2 MiB instead of per
    4 KiB (``THP_MEM_ALLOC_ENABLE=1`` does this for every PyTorch allocation)."""
    out = torch.empty_like(x)
    start = -(-out.data_ptr() // HUGE_PAGE) * HUGE_PAGE
    end = (out.data_ptr() + out.numel() * out.element_size()) // HUGE_PAGE * HUGE_PAGE
    if _madvise is not None and end > start:
        _madvise(start, end - start, MADV_HUGEPAGE)  # advice only: a failure changes nothing
    return out


NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _array(t: torch.Tensor | None, dtype: torch.dtype) -> np.ndarray:
    """``t`` as a contiguous numpy array of ``dtype`` (an empty one for None)."""
    if t is None:
        return np.empty(0, dtype=NUMPY_DTYPES[dtype])
    return t.detach().to(dtype).contiguous().numpy()


def forward_pass(
    x: torch.Tensor, v_init: torch.Tensor | None, spec: NeuronSpec, store_state: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes ``[T, N]`` of ``x`` ``[T, N]`` (contiguous, float32 or float64, CPU) and the
    final membrane (``[N]`` in ``x``'s dtype, empty unless ``store_state``)."""
    steps, n = x.shape
    spikes = _empty_like(x)
    v_out = torch.empty(n if store_state else 0, dtype=x.dtype)
    if n == 0 or steps == 0:
        return spikes, v_out
    c, _ = _coefficients(spec, np.dtype(NUMPY_DTYPES[x.dtype]))
    xs, ss, vi, vo = x.detach().numpy(), spikes.numpy(), _array(v_init, x.dtype), v_out.numpy()
    mode, hard, has_v_init = _mode(spec), spec.hard_reset, v_init is not None

    def run(lo: int, hi: int) -> None:
        _forward_kernel(xs, ss, vi, vo, lo, hi, c, mode, hard, has_v_init, store_state)

    _in_parallel(steps, n, run, BLOCK)
    return spikes, v_out


def backward_pass(
    x: torch.Tensor, v_init: torch.Tensor | None, grad_spikes: torch.Tensor | None,
    grad_v: torch.Tensor | None, spec: NeuronSpec,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``dL/dx`` ``[T, N]`` (dtype of ``x``) and ``dL/dv_init`` (``[N]``, empty without
    ``v_init``) from the gradients of the spikes ``[T, N]`` and of the final membrane
    ``[N]`` (either may be None)."""
    steps, n = x.shape
    grad_x = _empty_like(x)
    grad_v_init = torch.empty(n if v_init is not None else 0, dtype=x.dtype)
    if n == 0 or steps == 0:
        return grad_x, grad_v_init
    if grad_spikes is None:
        grad_spikes = torch.zeros_like(x)
    has_grad_v = grad_v is not None and grad_v.numel() > 0
    c, ic = _coefficients(spec, np.dtype(NUMPY_DTYPES[x.dtype]))
    xs, gs, gx = x.detach().numpy(), _array(grad_spikes, x.dtype), grad_x.numpy()
    vi, gv = _array(v_init, x.dtype), _array(grad_v if has_grad_v else None, x.dtype)
    gvi = grad_v_init.numpy()
    block = max(64, min(BACKWARD_BLOCK, TILE_ELEMENTS // steps // 64 * 64))
    flags = (_mode(spec), spec.hard_reset, spec.detach_reset, SURROGATES[spec.surrogate].id,
             v_init is not None, has_grad_v)

    def run(lo: int, hi: int) -> None:
        _backward_kernel(xs, gs, gx, vi, gv, gvi, lo, hi, block, c, ic, *flags)

    _in_parallel(steps, n, run, block)
    return grad_x, grad_v_init
