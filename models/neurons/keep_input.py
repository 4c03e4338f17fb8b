"""The autograd rule of the ``torch`` and ``triton`` backends: keep only the input.

Each of the two backends gives two passes over ``[T, N]`` tensors:
``forward_pass(x, v_init, spec, store_state) -> (spikes, v_final)`` and
``backward_pass(x, v_init, grad_spikes, grad_v, spec) -> (grad_x, grad_v_init)``, where the
incoming gradients may be None and backward recomputes the membrane from ``x``.
"""

from __future__ import annotations

import torch

from .dynamics import NeuronSpec


def _passes(backend: str):
    """``(forward_pass, backward_pass)`` of ``backend`` (Triton is imported when first used)."""
    if backend == "triton":
        from . import triton_backend as module
    else:
        from . import torch_backend as module
    return module.forward_pass, module.backward_pass


class KeepInputFunction(torch.autograd.Function):
    """Spikes ``[T, N]`` and final membrane ``[N]`` of ``x`` ``[T, N]``; keeps ``x`` (and
    ``v_init``) for backward and nothing else."""

    @staticmethod
    def forward(ctx, x, v_init, spec: NeuronSpec, backend: str, store_state: bool):
        forward_pass, _ = _passes(backend)
        spikes, v_final = forward_pass(x, v_init, spec, store_state)
        ctx.spec, ctx.backend = spec, backend
        ctx.save_for_backward(x, *([v_init] if v_init is not None else []))
        ctx.set_materialize_grads(False)
        return spikes, v_final

    @staticmethod
    def backward(ctx, grad_spikes, grad_v):
        x, *rest = ctx.saved_tensors
        v_init = rest[0] if rest else None
        _, backward_pass = _passes(ctx.backend)
        grad_x, grad_v_init = backward_pass(x, v_init, grad_spikes, grad_v, ctx.spec)
        if v_init is None:
            return grad_x, None, None, None, None
        return grad_x, grad_v_init.to(v_init.dtype), None, None, None


def multistep(
    x: torch.Tensor, v_init: torch.Tensor | None, spec: NeuronSpec, backend: str,
    store_state: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Spikes ``[T, ...]`` of ``x`` ``[T, ...]`` and the final membrane ``[...]`` (None unless
    ``store_state``) by ``backend`` (``torch`` or ``triton``)."""
    steps = x.shape[0]
    flat_v = None if v_init is None else v_init.reshape(-1).contiguous()
    spikes, v_final = KeepInputFunction.apply(
        x.reshape(steps, -1).contiguous(), flat_v, spec, backend, store_state
    )
    return spikes.reshape(x.shape), (v_final.reshape(x.shape[1:]) if store_state else None)


def input_grad(
    x: torch.Tensor, grad_spikes: torch.Tensor, spec: NeuronSpec, backend: str
) -> torch.Tensor:
    """``dL/dx`` ``[T, ...]`` from ``dL/dS`` for the spikes of ``x`` ``[T, ...]`` (from rest)."""
    steps = x.shape[0]
    _, backward_pass = _passes(backend)
    grad_x, _ = backward_pass(
        x.reshape(steps, -1).contiguous(), None, grad_spikes.reshape(steps, -1).contiguous(),
        None, spec,
    )
    return grad_x.reshape(x.shape)
