"""Functional multi-step LIF and IF neurons with a choice of backend."""

from __future__ import annotations

import importlib.util
import os

import torch

from . import keep_input, spikingjelly_backend
from .dynamics import NeuronSpec

BACKENDS = ("auto", "torch", "triton", "spikingjelly")
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def triton_available() -> bool:
    """Whether the Triton package is installed (it needs CUDA or ``TRITON_INTERPRET=1`` to run).

    Looked up once, at import: ``torch.compile`` does not trace ``importlib``."""
    return _TRITON_INSTALLED


def resolve_backend(backend: str, x: torch.Tensor) -> str:
    """The backend that runs ``x``: ``auto`` is ``triton`` on CUDA when Triton imports, else
    ``torch``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid choices: {list(BACKENDS)}")
    if backend == "auto":
        return "triton" if x.is_cuda and triton_available() else "torch"
    return backend


def _check_input(x: torch.Tensor, v_init: torch.Tensor | None, backend: str) -> None:
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
    backend = resolve_backend(backend, x)
    _check_input(x, v_init, backend)
    if backend == "spikingjelly":
        spikes, v_final = spikingjelly_backend.multistep(x, v_init, spec)
        return spikes, (v_final if return_state else None)
    return keep_input.multistep(x, v_init, spec, backend, return_state)


def neuron_input_grad(
    x: torch.Tensor, grad_spikes: torch.Tensor, spec: NeuronSpec, backend: str = "auto"
) -> torch.Tensor:
    """``dL/dx`` ``[T, ...]`` given ``dL/dS`` ``[T, ...]`` for the spikes of ``x`` ``[T, ...]``,
    recomputing the membrane: the backward pass of :func:`neuron_multistep` for a caller
    that keeps ``x`` itself (or what ``x`` is recomputed from). Backends ``torch`` and
    ``triton``."""
    backend = resolve_backend(backend, x)
    _check_input(x, None, backend)
    if backend in ("torch", "triton"):
        return keep_input.input_grad(x, grad_spikes, spec, backend)
    raise ValueError(
        f"neuron_input_grad has no {backend!r} backend; valid choices: 'torch', 'triton', 'auto'"
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
        backend: ``"auto"``, ``"torch"``, ``"triton"`` or ``"spikingjelly"``.
        v_init: membrane ``[...]`` before the first step; ``None`` starts at ``v_reset``
            (0 for soft reset). Gradients flow into it.
        return_state: also return the membrane ``[...]`` after the last step, so a long
            sequence can be fed in chunks (pass it as the next chunk's ``v_init``).

    Returns:
        Spikes ``[T, ...]`` of 0/1 in the dtype of ``x`` (and the final membrane).

    A NaN in ``x`` never fires: it makes that neuron's membrane NaN from that step on, so the
    neuron stays silent for the rest of the call, and its gradients are NaN.
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
