"""A neuron that reads a BatchNorm output, keeping only the BatchNorm input for backward.

In `neuron(BN(z))` autograd keeps `z` for BatchNorm's backward and `BN(z)` for the neuron's:
two real-valued tensors of the same size. `norm_then_fire` keeps `z` alone and recomputes
`BN(z)` in backward from `z` and the batch statistics, with the same kernels, so spikes,
loss, gradients and running statistics are those of the two layers run one after the other.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .dynamics import NeuronSpec
from .functional import neuron_input_grad, neuron_multistep, resolve_backend
from .keep_input import FUSED_BACKENDS

_batch_norm = torch.ops.aten.native_batch_norm
_batch_norm_backward = torch.ops.aten.native_batch_norm_backward


def _running_stats(norm: nn.modules.batchnorm._BatchNorm) -> tuple[bool, float]:
    """BatchNorm's own choice of batch statistics and of the running-average factor, as in
    `torch.nn.modules.batchnorm._BatchNorm.forward` (which also counts the batch)."""
    factor = 0.0 if norm.momentum is None else norm.momentum
    if norm.training and norm.track_running_stats and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else factor
    use_batch_stats = norm.training or (norm.running_mean is None and norm.running_var is None)
    return use_batch_stats, factor


class _NormThenFire(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, weight, bias, norm, spec: NeuronSpec, backend: str) -> Tensor:
        use_batch_stats, factor = _running_stats(norm)
        keep_running = not norm.training or norm.track_running_stats
        running_mean = norm.running_mean if keep_running else None
        running_var = norm.running_var if keep_running else None
        y, mean, invstd = _batch_norm(
            z.flatten(0, 1), weight, bias, running_mean, running_var, use_batch_stats, factor,
            norm.eps,
        )
        spikes, _ = neuron_multistep(y.reshape(z.shape), spec, backend)
        ctx.save_for_backward(z, weight, bias, mean, invstd)
        ctx.use_batch_stats = use_batch_stats
        ctx.running = (None, None) if use_batch_stats else (running_mean, running_var)
        ctx.eps = norm.eps
        ctx.spec, ctx.backend = spec, backend
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: Tensor):
        z, weight, bias, mean, invstd = ctx.saved_tensors
        flat = z.flatten(0, 1)
        y, _, _ = _batch_norm(flat, weight, bias, *ctx.running, ctx.use_batch_stats, 0.0, ctx.eps)
        grad_y = neuron_input_grad(y.reshape(z.shape), grad_spikes, ctx.spec, ctx.backend)
        grad_z, grad_weight, grad_bias = _batch_norm_backward(
            grad_y.flatten(0, 1), flat, weight, *ctx.running, mean, invstd, ctx.use_batch_stats,
            ctx.eps, list(ctx.needs_input_grad[:3]),
        )
        return grad_z.reshape(z.shape), grad_weight, grad_bias, None, None, None


def norm_per_step(z: Tensor, norm: nn.Module) -> Tensor:
    """``norm`` (a frame-wise module) applied to every time step of ``z`` ``[T, B, ...]``."""
    return norm(z.flatten(0, 1)).reshape(z.shape)


def norm_then_fire(z: Tensor, norm: nn.Module, spec: NeuronSpec, backend: str) -> Tensor:
    """Spikes ``[T, B, C, ...]`` of the neuron ``spec`` on ``norm(z)``, ``z`` ``[T, B, C, ...]``,
    ``norm`` applied per time step.

    Keeps only ``z`` for backward when ``norm`` is a BatchNorm and the backend ``numba``,
    ``torch`` or ``triton``; otherwise runs ``norm`` as a module and the neuron on its output.
    """
    fusable = isinstance(norm, nn.modules.batchnorm._BatchNorm) and resolve_backend(
        backend, z
    ) in FUSED_BACKENDS
    if not fusable:
        return neuron_multistep(norm_per_step(z, norm), spec, backend)[0]
    return _NormThenFire.apply(z, norm.weight, norm.bias, norm, spec, backend)
