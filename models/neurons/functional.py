"""Functional multi-step LIF and IF neurons with a choice of backend."""

from __future__ import annotations

import importlib.util
import logging
import os

import torch

from . import keep_input, spikingjelly_backend
from .dynamics import NeuronSpec, state_dtype

BACKENDS = ("auto", "numba", "torch", "triton", "spikingjelly")
"""``auto``: ``triton`` on CUDA (when Triton is installed), else ``numba`` on the CPU (when
numba is installed), else ``torch``. ``numba`` runs float32 and float64 CPU tensors and hands
other dtypes to ``torch``."""
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
NUMBA_DTYPES = (torch.float32, torch.float64)
_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None
_NUMBA_INSTALLED = importlib.util.find_spec("numba") is not None
_log = logging.getLogger(__name__)
_said: set[str] = set()


def triton_available() -> bool:
    """Whether the Triton package is installed (it needs CUDA or ``TRITON_INTERPRET=1`` to run).

    Looked up once, at import: ``torch.compile`` does not trace ``importlib``."""
    return _TRITON_INSTALLED


def numba_available() -> bool:
    """Whether numba is installed (looked up once, at import, as Triton is)."""
    return _NUMBA_INSTALLED


def _say_once(message: str) -> None:
    """Log ``message`` the first time (in eager mode: a traced graph does not log)."""
    if message not in _said and not torch.compiler.is_compiling():
        _said.add(message)
        _log.warning(message)


def resolve_backend(backend: str, x: torch.Tensor) -> str:
    """The backend that runs ``x`` (see :data:`BACKENDS`); ``numba`` falls back to ``torch``
    for other dtypes and, with one log line, where numba is not installed."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid choices: {list(BACKENDS)}")
    if backend == "auto":
        if x.device.type != "cpu":
            return "triton" if x.is_cuda and triton_available() else "torch"
        backend = "numba"
    if backend == "numba" and x.device.type == "cpu" and x.dtype in NUMBA_DTYPES:
        if numba_available():
            return "numba"
        _say_once("numba is not installed: CPU neurons run on the torch backend, which is "
                  "slower (pip install numba)")
    return "torch" if backend == "numba" and x.device.type == "cpu" else backend


def _check_input(x: torch.Tensor, v_init: torch.Tensor | None) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor [T, ...], got {type(x).__name__}")
    if x.dim() < 1:
        raise ValueError("x must have at least 1 dimension (time first, [T, ...]), got 0-d")
    if not x.is_floating_point():
        raise TypeError(
            f"x must be a floating-point tensor, got {x.dtype}; valid choices: "
            "torch.float16, torch.bfloat16, torch.float32, torch.float64"
        )
    if v_init is not None and tuple(v_init.shape) != tuple(x.shape[1:]):
        raise ValueError(
            f"v_init must have the shape of one time step of x, {tuple(x.shape[1:])}, "
            f"got {tuple(v_init.shape)}"
        )


def _check_backend(x: torch.Tensor, backend: str) -> None:
    """That the resolved ``backend`` can run ``x``."""
    if backend == "numba" and x.device.type != "cpu":
        raise ValueError(
            f"backend 'numba' runs CPU tensors, got one on {x.device}; use backend='auto', "
            "'triton' or 'torch'"
        )
    if backend == "triton":
        if x.dtype not in TRITON_DTYPES:
            raise TypeError(
                f"backend 'triton' takes {[str(d) for d in TRITON_DTYPES]}, got {x.dtype}; "
                "use backend='torch' for float64"
            )
        if not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError(
                f"backend 'triton' needs a CUDA tensor, got one on {x.device}; set "
                "TRITON_INTERPRET=1 before importing models to run the kernels on the CPU, "
                "or use backend='torch' or 'auto'"
            )
        if not triton_available():
            raise RuntimeError("backend 'triton' needs the triton package; pip install triton")


def neuron_multistep(
    x: torch.Tensor,
    spec: NeuronSpec,
    backend: str = "auto",
    v_init: torch.Tensor | None = None,
    return_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Spikes ``[T, ...]`` (dtype of ``x``) of input ``x`` ``[T, ...]``, and the final membrane
    ``[...]`` when ``return_state`` (else None)."""
    _check_input(x, v_init)
    backend = resolve_backend(backend, x)
    _check_backend(x, backend)
    if x.shape[0] == 0:
        return x.new_empty(x.shape), (_rest_state(x, v_init, spec) if return_state else None)
    if backend == "spikingjelly":
        spikes, v_final = spikingjelly_backend.multistep(x, v_init, spec)
        return spikes, (v_final if return_state else None)
    return keep_input.multistep(x, v_init, spec, backend, return_state)


def _rest_state(x: torch.Tensor, v_init: torch.Tensor | None, spec: NeuronSpec) -> torch.Tensor:
    """The membrane ``[...]`` after no step at all: ``v_init`` (gradients flow through), or
    ``spec.v_rest``."""
    dtype = state_dtype(x.dtype)
    if v_init is not None:
        return v_init.to(dtype) + 0.0
    return torch.full(x.shape[1:], spec.v_rest, dtype=dtype, device=x.device)


def neuron_input_grad(
    x: torch.Tensor, grad_spikes: torch.Tensor, spec: NeuronSpec, backend: str = "auto"
) -> torch.Tensor:
    """``dL/dx`` ``[T, ...]`` given ``dL/dS`` ``[T, ...]`` for the spikes of ``x`` ``[T, ...]``,
    recomputing the membrane: the backward pass of :func:`neuron_multistep` for a caller
    that keeps ``x`` itself (or what ``x`` is recomputed from). Backends ``numba``, ``torch``
    and ``triton``."""
    _check_input(x, None)
    backend = resolve_backend(backend, x)
    _check_backend(x, backend)
    if backend in keep_input.FUSED_BACKENDS:
        return keep_input.input_grad(x, grad_spikes, spec, backend)
    raise ValueError(
        f"neuron_input_grad has no {backend!r} backend; valid choices: 'numba', 'torch', "
        "'triton', 'auto'"
    )


def lif_multistep(
    x: torch.Tensor,
    tau: float = 2.0,
    v_threshold: float = 1.0,
    v_reset: float | None = 0.0,
    decay_input: bool = True,
    detach_reset: bool = True,
    surrogate: str = "sigmoid",
    alpha: float | None = None,
    backend: str = "auto",
    v_init: torch.Tensor | None = None,
    return_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Multi-step leaky integrate-and-fire neurons (spikingjelly's ``LIFNode``, ``step_mode="m"``).

    Args:
        x: input current ``[T, ...]``, time first; float16, bfloat16, float32 or float64.
        tau: membrane time constant, > 1.
        v_threshold: firing threshold.
        v_reset: membrane after a spike (hard reset); ``None`` subtracts ``v_threshold``
            instead (soft reset).
        decay_input: whether the input is divided by ``tau`` too.
        detach_reset: whether the spike inside the reset carries no gradient.
        surrogate: ``"sigmoid"`` or ``"atan"``, the gradient of the spike in backward.
        alpha: the surrogate's sharpness; ``None`` takes its default (sigmoid 4, atan 2).
        backend: ``"auto"``, ``"numba"``, ``"torch"``, ``"triton"`` or ``"spikingjelly"``
            (see :data:`BACKENDS`).
        v_init: membrane ``[...]`` before the first step; ``None`` starts at ``v_reset``
            (0 for soft reset). Gradients flow into it.
        return_state: also return the membrane ``[...]`` after the last step, so a long
            sequence can be fed in chunks (pass it as the next chunk's ``v_init``).

    Returns:
        Spikes ``[T, ...]`` of 0/1 in the dtype of ``x`` (and the final membrane).

    ``T = 0`` (``x`` of shape ``[0, ...]``) gives empty spikes; the final membrane is then
    ``v_init`` (or ``v_reset``, 0 for soft reset).

    Non-finite input (the ``numba``, ``torch`` and ``triton`` backends agree):

    - ``+inf`` fires. After a hard reset the membrane is ``v_reset`` and the neuron goes on as
      usual; with soft reset it stays ``+inf`` and the neuron fires at every later step.
    - ``-inf`` never fires; the membrane stays ``-inf``, so the neuron is silent for the rest
      of the call. (An infinite membrane stays as it is; ``inf - inf`` is NaN.)
    - NaN never fires: it makes that neuron's membrane NaN from that step on, so the neuron
      stays silent for the rest of the call, and its gradients are NaN.

    The surrogate gradient at an infinite ``H`` is 0 (and so is its product with
    ``v_reset - H`` without ``detach_reset``), so the gradients stay finite: an infinite
    input gets 0, and ``+inf`` under a hard reset passes no gradient to earlier steps.
    spikingjelly differs: its hard reset ``S v_reset + (1 - S) H`` turns ``+inf`` into NaN,
    and its leak ``V + (X - V) / tau`` turns an infinite membrane into NaN.
    """
    spec = NeuronSpec(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, alpha)
    spikes, v_final = neuron_multistep(x, spec, backend, v_init, return_state)
    return (spikes, v_final) if return_state else spikes


def if_multistep(
    x: torch.Tensor,
    v_threshold: float = 1.0,
    v_reset: float | None = 0.0,
    detach_reset: bool = True,
    surrogate: str = "sigmoid",
    alpha: float | None = None,
    backend: str = "auto",
    v_init: torch.Tensor | None = None,
    return_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Multi-step integrate-and-fire neurons (spikingjelly's ``IFNode``): ``H = V + X``.

    Arguments and result as :func:`lif_multistep`, without ``tau`` and ``decay_input``.
    """
    spec = NeuronSpec(None, v_threshold, v_reset, True, detach_reset, surrogate, alpha)
    spikes, v_final = neuron_multistep(x, spec, backend, v_init, return_state)
    return (spikes, v_final) if return_state else spikes
