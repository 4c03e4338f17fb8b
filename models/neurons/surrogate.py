"""The one table of surrogate gradients of the Heaviside step, ``dS/dH`` as a function of
``x = H - v_threshold``.

Every backend finds a surrogate here: its ``id`` is what the Triton and numba kernels switch
on (they compute the same function in their own language), ``grad`` is its torch function
(the ``torch`` backend), ``spikingjelly`` names spikingjelly's class of it (the baseline).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


def _sigmoid_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """``alpha * sig(alpha x) * (1 - sig(alpha x))``, in place."""
    sig = x.mul_(alpha).sigmoid_()
    return torch.addcmul(sig, sig, sig, value=-1.0, out=sig).mul_(alpha)


def _atan_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """``alpha / (2 (1 + (pi/2 alpha x)^2))``, in place."""
    return x.mul_(0.5 * math.pi * alpha).square_().add_(1.0).reciprocal_().mul_(0.5 * alpha)


@dataclass(frozen=True)
class Surrogate:
    """One surrogate gradient: its name, kernel id, default ``alpha``, torch function
    (``grad(x, alpha)``, overwrites ``x``) and spikingjelly class name."""

    name: str
    id: int
    default_alpha: float
    grad: Callable[[torch.Tensor, float], torch.Tensor]
    spikingjelly: str


SURROGATES: dict[str, Surrogate] = {
    s.name: s
    for s in (
        Surrogate("sigmoid", 0, 4.0, _sigmoid_grad, "Sigmoid"),
        Surrogate("atan", 1, 2.0, _atan_grad, "ATan"),
    )
}
"""Every surrogate by name."""


def surrogate_grad(x: torch.Tensor, surrogate: str, alpha: float) -> torch.Tensor:
    """``dS/dH`` at ``x = H - v_threshold``; same shape as ``x``; ``x`` is overwritten.
    At ``x = +-inf`` it is 0."""
    if surrogate not in SURROGATES:
        raise ValueError(f"unknown surrogate {surrogate!r}; valid choices: {sorted(SURROGATES)}")
    return SURROGATES[surrogate].grad(x, alpha)
