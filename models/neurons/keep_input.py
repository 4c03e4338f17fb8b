"""The autograd rule of the ``numba``, ``torch`` and ``triton`` backends: keep only the input.

Each of the three backends gives two passes over ``[T, N]`` tensors:
``forward_pass(x, v_init, spec, store_state) -> (spikes, v_final)`` and
``backward_pass(x, v_init, grad_spikes, grad_v, spec) -> (grad_x, grad_v_init)``, where the
incoming gradients may be None and backward recomputes the membrane from ``x``. ``v_final``
is ``[N]`` (empty unless ``store_state``) and ``grad_v_init`` ``[N]`` (empty without
``v_init``), both in :func:`.dynamics.state_dtype`.

In eager mode the passes are plain calls. While ``torch.compile`` or ``torch.export`` traces,
they go through ``torch.library`` custom ops, ``maxformer::<backend>_neuron_forward`` and
``maxformer::<backend>_neuron_backward``, which the tracer keeps as they are (opaque, with a
fake implementation for shapes); a custom op costs host time per call, which eager mode saves.
"""

from __future__ import annotations

import importlib
import logging
import math

import torch

from .dynamics import NeuronSpec, state_dtype

FUSED_BACKENDS = ("numba", "torch", "triton")
_log = logging.getLogger(__name__)
_modules: dict[str, object] = {}


def backend_module(backend: str):
    """The module of ``backend``'s passes, imported when first used. When numba is installed
    but fails to import, the ``numba`` backend runs the ``torch`` passes (said once)."""
    if backend not in _modules:
        try:
            _modules[backend] = importlib.import_module(f".{backend}_backend", __package__)
        except ImportError as error:
            if backend != "numba":
                raise
            _log.warning("numba does not import (%s): CPU neurons run on the torch backend",
                         error)
            _modules[backend] = importlib.import_module(".torch_backend", __package__)
    return _modules[backend]


_FORWARD_SCHEMA = (
    "(Tensor x, Tensor? v_init, float? tau, float v_threshold, float? v_reset, "
    "bool decay_input, bool detach_reset, str surrogate, float alpha, bool store_state) "
    "-> (Tensor, Tensor)"
)
_BACKWARD_SCHEMA = (
    "(Tensor x, Tensor? v_init, Tensor? grad_spikes, Tensor? grad_v, float? tau, "
    "float v_threshold, float? v_reset, bool decay_input, bool detach_reset, str surrogate, "
    "float alpha) -> (Tensor, Tensor)"
)


def _define_ops(backend: str):
    """The custom ops of ``backend``: the spec flattened into plain arguments."""

    def forward(x, v_init, *fields_and_store_state):
        *fields, store_state = fields_and_store_state
        return backend_module(backend).forward_pass(x, v_init, NeuronSpec(*fields), store_state)

    def backward(x, v_init, grad_spikes, grad_v, *fields):
        return backend_module(backend).backward_pass(
            x, v_init, grad_spikes, grad_v, NeuronSpec(*fields)
        )

    forward_op = torch.library.custom_op(
        f"maxformer::{backend}_neuron_forward", forward, mutates_args=(), schema=_FORWARD_SCHEMA
    )
    backward_op = torch.library.custom_op(
        f"maxformer::{backend}_neuron_backward", backward, mutates_args=(),
        schema=_BACKWARD_SCHEMA,
    )

    @forward_op.register_fake
    def _(x, v_init, *fields_and_store_state):
        store_state = fields_and_store_state[-1]
        n = x.shape[1] if store_state else 0
        return torch.empty_like(x), x.new_empty(n, dtype=state_dtype(x.dtype))

    @backward_op.register_fake
    def _(x, v_init, grad_spikes, grad_v, *fields):
        n = x.shape[1] if v_init is not None else 0
        return torch.empty_like(x), x.new_empty(n, dtype=state_dtype(x.dtype))

    return forward_op, backward_op


_OPS = {backend: _define_ops(backend) for backend in FUSED_BACKENDS}


def _forward(x, v_init, spec: NeuronSpec, backend: str, store_state: bool):
    if torch.compiler.is_compiling():
        return _OPS[backend][0](x, v_init, *spec.fields(), store_state)
    return backend_module(backend).forward_pass(x, v_init, spec, store_state)


def _backward(x, v_init, grad_spikes, grad_v, spec: NeuronSpec, backend: str):
    if grad_v is not None and grad_v.numel() == 0:
        grad_v = None
    if torch.compiler.is_compiling():
        return _OPS[backend][1](x, v_init, grad_spikes, grad_v, *spec.fields())
    return backend_module(backend).backward_pass(x, v_init, grad_spikes, grad_v, spec)


class KeepInputFunction(torch.autograd.Function):
    """Spikes ``[T, N]`` and final membrane ``[N]`` of ``x`` ``[T, N]``; keeps ``x`` (and
    ``v_init``) for backward and nothing else."""

    @staticmethod
    def forward(ctx, x, v_init, spec: NeuronSpec, backend: str, store_state: bool):
        spikes, v_final = _forward(x, v_init, spec, backend, store_state)
        ctx.spec, ctx.backend = spec, backend
        ctx.save_for_backward(x, *([v_init] if v_init is not None else []))
        ctx.set_materialize_grads(False)
        return spikes, v_final

    @staticmethod
    def backward(ctx, grad_spikes, grad_v):
        x, *rest = ctx.saved_tensors
        v_init = rest[0] if rest else None
        grad_spikes = None if grad_spikes is None else grad_spikes.contiguous()
        grad_v = None if grad_v is None else grad_v.contiguous()
        grad_x, grad_v_init = _backward(x, v_init, grad_spikes, grad_v, ctx.spec, ctx.backend)
        if v_init is None:
            return grad_x, None, None, None, None
        return grad_x, grad_v_init.to(v_init.dtype), None, None, None


def multistep(
    x: torch.Tensor, v_init: torch.Tensor | None, spec: NeuronSpec, backend: str,
    store_state: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Spikes ``[T, ...]`` of ``x`` ``[T, ...]`` and the final membrane ``[...]`` (None unless
    ``store_state``) by ``backend`` (``numba``, ``torch`` or ``triton``)."""
    steps, n = x.shape[0], math.prod(x.shape[1:])
    flat_v = None if v_init is None else v_init.reshape(n).contiguous()
    spikes, v_final = KeepInputFunction.apply(
        x.reshape(steps, n).contiguous(), flat_v, spec, backend, store_state
    )
    return spikes.reshape(x.shape), (v_final.reshape(x.shape[1:]) if store_state else None)


def input_grad(
    x: torch.Tensor, grad_spikes: torch.Tensor, spec: NeuronSpec, backend: str
) -> torch.Tensor:
    """``dL/dx`` ``[T, ...]`` from ``dL/dS`` for the spikes of ``x`` ``[T, ...]`` (from rest)."""
    steps, n = x.shape[0], math.prod(x.shape[1:])
    grad_x, _ = _backward(
        x.reshape(steps, n).contiguous(), None, grad_spikes.reshape(steps, n).contiguous(),
        None, spec, backend,
    )
    return grad_x.reshape(x.shape)
