"""The parameters of a multi-step LIF/IF neuron, validated once, and its per-step coefficients.

Every backend computes, for ``t = 1..T`` with ``V[0] = v_init`` (``v_reset``, or 0 for soft
reset, when not given)::

    H[t] = decay * V[t-1] + input_gain * X[t] + bias          (charge)
    S[t] = 1 if H[t] >= v_threshold else 0                      (fire)
    V[t] = v_reset if S[t] else H[t]            (hard reset)    (reset)
    V[t] = H[t] - v_threshold * S[t]            (soft reset, ``v_reset=None``)

with ``decay = 1 - 1/tau`` (1 for IF), ``input_gain = 1/tau`` for ``decay_input`` LIF (else 1)
and ``bias = v_reset / tau`` for LIF (else 0). This is spikingjelly's ``LIFNode``/``IFNode``
written as one affine update. The CPU backends (``numba``, ``torch``) round it as spikingjelly
does, ``V + (X - (V - V_reset)) / tau`` (``decay_input``) or ``V - (V - V_reset) / tau + X``,
so their spikes and membranes are spikingjelly's bit for bit; the Triton kernels compute the
affine form in fp32 registers. Where ``V[t-1]`` is infinite, ``H[t] = V[t-1] + X[t]`` in every
backend (an infinite membrane stays as it is), and a hard reset gives ``v_reset`` after any
spike, ``H = +inf`` included.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

import torch

from .surrogate import SURROGATES


@dataclass(frozen=True)
class NeuronSpec:
    """What a multi-step LIF (``tau`` a number) or IF (``tau=None``) neuron computes."""

    tau: float | None = 2.0
    v_threshold: float = 1.0
    v_reset: float | None = 0.0
    decay_input: bool = True
    detach_reset: bool = True
    surrogate: str = "sigmoid"
    alpha: float | None = None

    def __post_init__(self) -> None:
        if self.tau is not None and not (math.isfinite(self.tau) and self.tau > 1.0):
            raise ValueError(f"tau must be a finite number > 1 (or None for IF), got {self.tau!r}")
        if not math.isfinite(self.v_threshold):
            raise ValueError(f"v_threshold must be finite, got {self.v_threshold!r}")
        if self.v_reset is not None and not math.isfinite(self.v_reset):
            raise ValueError(f"v_reset must be finite or None (soft reset), got {self.v_reset!r}")
        if self.surrogate not in SURROGATES:
            raise ValueError(
                f"unknown surrogate {self.surrogate!r}; valid choices: {sorted(SURROGATES)}"
            )
        if self.alpha is None:
            object.__setattr__(self, "alpha", SURROGATES[self.surrogate].default_alpha)
        elif not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"alpha must be a finite number > 0, got {self.alpha!r}")

    def fields(self) -> tuple:
        """The spec as plain values in field order (``NeuronSpec(*spec.fields()) == spec``):
        what the ``torch.library`` custom ops take."""
        return astuple(self)

    @property
    def is_lif(self) -> bool:
        return self.tau is not None

    @property
    def hard_reset(self) -> bool:
        return self.v_reset is not None

    @property
    def v_rest(self) -> float:
        """The state a call starts from when no ``v_init`` is given."""
        return 0.0 if self.v_reset is None else float(self.v_reset)

    @property
    def decay(self) -> float:
        """``dH[t]/dV[t-1]``."""
        return 1.0 - 1.0 / self.tau if self.is_lif else 1.0

    @property
    def input_gain(self) -> float:
        """``dH[t]/dX[t]``."""
        return 1.0 / self.tau if self.is_lif and self.decay_input else 1.0

    @property
    def bias(self) -> float:
        """The constant term of the charge: the leak towards ``v_reset``."""
        return self.v_rest / self.tau if self.is_lif else 0.0


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the membrane is computed and returned in for inputs of ``dtype``: float64
    for float64, else float32 (half precision is computed in float32)."""
    return torch.float64 if dtype == torch.float64 else torch.float32
