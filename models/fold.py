"""BatchNorm folded into the convolution before it, for evaluation.

In eval mode ``BN(conv(x))`` is ``conv'(x)`` with ``W' = W * s`` and ``b' = (b - mean) * s +
beta``, ``s = gamma / sqrt(var + eps)`` per output channel: one layer instead of two, the same
logits up to rounding. The pairs are found by the layers' names, as the zoo and the published
checkpoints name them: ``X_bn`` after ``X_conv`` or ``X``, ``bnN`` after ``convN``, and a
BatchNorm right after a convolution in an ``nn.Sequential``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
"""Layers a BatchNorm after them is folded into (output channels on dimension 0 of the
weight)."""


def _conv_before(parent: nn.Module, name: str, previous: str | None) -> str | None:
    """The name of the convolution child of ``parent`` that BatchNorm child ``name`` follows
    (``previous``: the child registered before it), or None."""
    children = dict(parent.named_children())
    if isinstance(parent, nn.Sequential):
        candidates = [previous]
    else:
        candidates = [name.replace("bn", "conv"), name.removesuffix("_bn")]
    for candidate in candidates:
        if candidate != name and isinstance(children.get(candidate), CONVOLUTIONS):
            return candidate
    return None


@torch.no_grad()
def fold_into(conv: nn.Module, norm: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """A copy of ``conv`` (Conv1d/2d/3d or Linear, out channels ``C``) computing
    ``norm(conv(x))`` with ``norm``'s running statistics (``norm``: ``C`` channels)."""
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError("a BatchNorm without running statistics cannot be folded")
    folded = copy.deepcopy(conv)
    scale = torch.rsqrt(norm.running_var.to(conv.weight.dtype) + norm.eps)
    mean = norm.running_mean.to(conv.weight.dtype)
    if norm.affine:
        scale = scale * norm.weight
    bias = -mean * scale
    if norm.affine:
        bias = bias + norm.bias
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    folded.weight.mul_(scale.reshape(-1, *([1] * (conv.weight.ndim - 1))))
    folded.bias = nn.Parameter(bias, requires_grad=conv.weight.requires_grad)
    return folded


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode where every BatchNorm that follows a convolution (see
    the module's doc) is folded into it and replaced by ``nn.Identity``; ``model`` is left as
    it is. For evaluation only: the copy's BatchNorm statistics are frozen into its weights."""
    folded = copy.deepcopy(model).eval()
    for parent in list(folded.modules()):
        previous = None
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                conv = _conv_before(parent, name, previous)
                if conv is not None:
                    setattr(parent, conv, fold_into(getattr(parent, conv), child))
                    setattr(parent, name, nn.Identity())
            previous = name
    return folded
