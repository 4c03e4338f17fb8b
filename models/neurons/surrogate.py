"""Surrogate gradients of the Heaviside step, ``dS/dH`` as a function of ``x = H - v_threshold``."""

from __future__ import annotations

import math

import torch


def surrogate_grad(x: torch.Tensor, surrogate: str, alpha: float) -> torch.Tensor:
    """``dS/dH`` at ``x = H - v_threshold``; same shape as ``x``; ``x`` is overwritten.

    sigmoid: ``alpha * sig(alpha x) * (1 - sig(alpha x))``;
    atan: ``alpha / (2 (1 + (pi/2 alpha x)^2))``.
    """
    if surrogate == "sigmoid":
        sig = x.mul_(alpha).sigmoid_()
        return torch.addcmul(sig, sig, sig, value=-1.0, out=sig).mul_(alpha)
    if surrogate == "atan":
        return x.mul_(0.5 * math.pi * alpha).square_().add_(1.0).reciprocal_().mul_(0.5 * alpha)
    raise ValueError(f"unknown surrogate {surrogate!r}; valid choices: ['atan', 'sigmoid']")
