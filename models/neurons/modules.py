"""``nn.Module`` wrappers of the multi-step neurons: no parameters, no buffers, no state."""

from __future__ import annotations

import torch
from torch import nn

from .dynamics import NeuronSpec
from .functional import BACKENDS, neuron_multistep
from .norm_fire import norm_per_step, norm_then_fire


class MultiStepNeuron(nn.Module):
    """The base class of the multi-step neurons: spikes ``[T, ...]`` of input ``[T, ...]``; the
    membrane starts at ``v_reset`` every call. Other packages find a model's neurons by this
    class (``isinstance(module, MultiStepNeuron)``)."""

    def __init__(self, spec: NeuronSpec, backend: str) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; valid choices: {list(BACKENDS)}")
        self.spec = spec
        self.backend = backend

    def forward(self, x: torch.Tensor, norm: nn.Module | None = None) -> torch.Tensor:
        """Spikes of ``x`` ``[T, ...]``; with ``norm`` (a BatchNorm applied per time step), of
        ``norm(x)``, whose output is then recomputed in backward instead of kept."""
        if norm is not None:
            return norm_then_fire(x, norm, self.spec, self.backend)
        return neuron_multistep(x, self.spec, self.backend)[0]

    def extra_repr(self) -> str:
        s = self.spec
        head = f"tau={s.tau}, " if s.is_lif else ""
        tail = f", decay_input={s.decay_input}" if s.is_lif else ""
        return (
            f"{head}v_threshold={s.v_threshold}, v_reset={s.v_reset}, "
            f"detach_reset={s.detach_reset}, surrogate={s.surrogate}(alpha={s.alpha})"
            f"{tail}, backend={self.backend}"
        )


class MultiStepLIF(MultiStepNeuron):
    """Multi-step LIF neurons; arguments as :func:`models.neurons.lif_multistep`."""

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        decay_input: bool = True,
        detach_reset: bool = True,
        surrogate: str = "sigmoid",
        alpha: float | None = None,
        backend: str = "auto",
    ) -> None:
        spec = NeuronSpec(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, alpha)
        super().__init__(spec, backend)


class MultiStepIF(MultiStepNeuron):
    """Multi-step IF neurons; arguments as :func:`models.neurons.if_multistep`."""

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        detach_reset: bool = True,
        surrogate: str = "sigmoid",
        alpha: float | None = None,
        backend: str = "auto",
    ) -> None:
        spec = NeuronSpec(None, v_threshold, v_reset, True, detach_reset, surrogate, alpha)
        super().__init__(spec, backend)


class MultiStepReLU(nn.Module):
    """ReLU where a network has a spiking neuron (its ANN twin): ``[T, ...] -> [T, ...]``,
    called like a neuron (with ``norm``, a BatchNorm applied per time step first)."""

    def forward(self, x: torch.Tensor, norm: nn.Module | None = None) -> torch.Tensor:
        return torch.relu(x if norm is None else norm_per_step(x, norm))
